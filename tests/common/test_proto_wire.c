/* The wire format itself: every message type encodes to the bytes recorded from the
 * encoder the table-driven one replaced, decodes back to what was encoded, and
 * docs/PROTOCOL.md holds the field tables the schemas give. */
#include "pd/proto.h"
#include "proto_frames.h"
#include "proto_samples.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void hex_dump(const char *what, const unsigned char *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes): ", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%02x", p[i]);
    fputc('\n', stderr);
}

Test(proto_wire, every_sample_encodes_to_its_recorded_bytes)
{
    size_t n_samples = 0;
    bool seen[PD_PROTO_TYPE_COUNT_] = {false};
    pd_proto_msg_t m;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    for (int k = 0; pd_sample_msg(k, &m); k++) {
        cr_assert_lt((size_t)k, sizeof(pd_recorded_frames) / sizeof(pd_recorded_frames[0]));
        pd_mp_writer_reset(&w);
        cr_assert_eq(pd_proto_encode(&m, &w), PD_OK, "sample %d (%s)", k,
                     pd_proto_type_name(m.type));
        size_t n = pd_mp_writer_size(&w);
        bool same = n == pd_recorded_frames[k].len &&
                    memcmp(pd_mp_writer_data(&w), pd_recorded_frames[k].bytes, n) == 0;
        if (!same) {
            hex_dump("encoded", pd_mp_writer_data(&w), n);
            hex_dump("recorded", (const unsigned char *)pd_recorded_frames[k].bytes,
                     pd_recorded_frames[k].len);
        }
        cr_assert(same, "sample %d (%s) differs from its recorded frame", k,
                  pd_proto_type_name(m.type));
        seen[m.type] = true;
        n_samples++;
    }
    cr_assert_eq(n_samples, sizeof(pd_recorded_frames) / sizeof(pd_recorded_frames[0]));
    for (int t = PD_PROTO_TYPE_NONE + 1; t < PD_PROTO_TYPE_COUNT_; t++)
        cr_assert(seen[t], "no sample of type %s", pd_proto_type_name((pd_proto_type_t)t));
    pd_mp_writer_cleanup(&w);
}

Test(proto_wire, decoding_a_sample_and_encoding_it_again_gives_the_same_bytes)
{
    pd_proto_msg_t m, out;
    pd_proto_fault_t fault;
    pd_mp_writer_t w;
    pd_mp_writer_init(&w);
    for (int k = 0; pd_sample_msg(k, &m); k++) {
        const char *frame = pd_recorded_frames[k].bytes;
        size_t len = pd_recorded_frames[k].len;
        cr_assert_eq(pd_proto_decode(&out, pd_proto_type_chan(m.type), frame, len, &fault), PD_OK,
                     "sample %d: %s", k, fault.reason);
        cr_assert_eq(out.type, m.type);
        pd_mp_writer_reset(&w);
        cr_assert_eq(pd_proto_encode(&out, &w), PD_OK);
        cr_assert_eq(pd_mp_writer_size(&w), len, "sample %d", k);
        cr_assert_eq(memcmp(pd_mp_writer_data(&w), frame, len), 0, "sample %d", k);
        pd_proto_msg_cleanup(&out);
    }
    pd_mp_writer_cleanup(&w);
}

/* Run pd-proto-doc --check on a doc; its exit status. */
static int doc_check(const char *doc)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "'%s/pd-proto-doc' --check '%s' 2>/dev/null", getenv("PD_BIN_DIR"),
             doc);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(proto_wire, protocol_md_holds_the_field_table_of_every_type)
{
    char doc[4096], copy[64], sed[8192];
    cr_assert_not_null(getenv("PD_BIN_DIR"));
    snprintf(doc, sizeof(doc), "%s/docs/PROTOCOL.md", getenv("PD_SOURCE_DIR"));
    cr_assert_eq(doc_check(doc), 0, "docs/PROTOCOL.md differs from the schemas: run "
                                    "`pd-proto-doc --update docs/PROTOCOL.md`");
    /* A documented default that is not the schema's is caught. */
    snprintf(copy, sizeof(copy), "/tmp/pdkv-protocol-%d.md", (int)getpid());
    snprintf(sed, sizeof(sed), "sed 's/| no (64) |/| no (65) |/' '%s' > '%s'", doc, copy);
    cr_assert_eq(system(sed), 0);
    cr_assert_eq(doc_check(copy), 1);
    unlink(copy);
}
