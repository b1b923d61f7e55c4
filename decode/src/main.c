/* pd-decode: see pd/decode.h. */
#include "pd/decode.h"

int main(int argc, char **argv)
{
    return pd_role_main(&pd_decode_role, argc, argv);
}
