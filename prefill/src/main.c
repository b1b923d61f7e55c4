/* pd-prefill: see pd/prefill.h. */
#include "pd/prefill.h"

int main(int argc, char **argv)
{
    return pd_prefill_main(argc, argv);
}
