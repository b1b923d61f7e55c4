/* Seeds for the protocol decoder's fuzz target: the frames of the wire test's samples. */
#include "proto_samples.h"

#include <stdlib.h>

size_t pd_fuzz_seed(int k, uint8_t **data_p);

size_t pd_fuzz_seed(int k, uint8_t **data_p)
{
    pd_proto_msg_t m;
    pd_mp_writer_t w;
    size_t n = 0;
    if (!pd_sample_msg(k, &m))
        return 0;
    pd_mp_writer_init(&w);
    if (pd_proto_encode(&m, &w) == PD_OK && (*data_p = malloc(pd_mp_writer_size(&w))) != NULL) {
        n = pd_mp_writer_size(&w);
        memcpy(*data_p, pd_mp_writer_data(&w), n);
    }
    pd_mp_writer_cleanup(&w);
    return n;
}
