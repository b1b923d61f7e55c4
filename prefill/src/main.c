/* pd-prefill: see pd/prefill.h. */
#include "pd/prefill.h"

int main(int argc, char **argv)
{
    return pd_role_main(&pd_prefill_role, argc, argv);
}
