/* pd-decode: see pd/decode.h. */
#include "pd/decode.h"

int main(int argc, char **argv)
{
    return pd_decode_main(argc, argv);
}
