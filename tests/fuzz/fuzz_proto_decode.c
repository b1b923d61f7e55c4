/* Fuzz target for the protocol decoder: any bytes, on any channel, give a status and never
 * a crash, a leak or a read out of bounds (run it under ASan); and whatever decodes is
 * something the encoder accepts, whose encoding decodes again and encodes to the same bytes
 * (the encoder and the decoder enforce the same schema). Built as a libFuzzer target with
 * -DPD_FUZZ=ON and clang, otherwise driven by fuzz_main.c. */
#include "pd/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void pd_fuzz_check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pd_mp_writer_t w1, w2;
    pd_mp_writer_init(&w1);
    pd_mp_writer_init(&w2);
    for (int chan = PD_PROTO_CHAN_CLIENT; chan <= PD_PROTO_CHAN_EVENTS; chan++) {
        pd_proto_msg_t m, again;
        pd_proto_fault_t fault;
        pd_status_t st = pd_proto_decode(&m, (pd_proto_chan_t)chan, data, size, &fault);
        if (st != PD_OK) {
            pd_fuzz_check(st < 0 && m.type == PD_PROTO_TYPE_NONE);
            continue;
        }
        pd_fuzz_check(pd_proto_type_chan(m.type) == (pd_proto_chan_t)chan);
        pd_mp_writer_reset(&w1);
        pd_fuzz_check(pd_proto_encode(&m, &w1) == PD_OK);
        pd_fuzz_check(pd_proto_decode(&again, (pd_proto_chan_t)chan, pd_mp_writer_data(&w1),
                                      pd_mp_writer_size(&w1), &fault) == PD_OK);
        pd_fuzz_check(again.type == m.type);
        pd_mp_writer_reset(&w2);
        pd_fuzz_check(pd_proto_encode(&again, &w2) == PD_OK);
        pd_fuzz_check(
            pd_mp_writer_size(&w1) == pd_mp_writer_size(&w2) &&
            memcmp(pd_mp_writer_data(&w1), pd_mp_writer_data(&w2), pd_mp_writer_size(&w1)) == 0);
        pd_proto_msg_cleanup(&again);
        pd_proto_msg_cleanup(&m);
    }
    pd_mp_writer_cleanup(&w1);
    pd_mp_writer_cleanup(&w2);
    return 0;
}
