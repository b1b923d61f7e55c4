#include "pd/status.h"

#include <string.h>

const char *pd_status_str(pd_status_t status)
{
    switch (status) {
#define PD_STATUS_MSG_(name, value, msg)                                                           \
    case name:                                                                                     \
        return msg;
        PD_STATUS_LIST(PD_STATUS_MSG_)
#undef PD_STATUS_MSG_
    }
    return "unknown status";
}

const char *pd_status_name(pd_status_t status)
{
    switch (status) {
#define PD_STATUS_NAME_(name, value, msg)                                                          \
    case name:                                                                                     \
        return #name;
        PD_STATUS_LIST(PD_STATUS_NAME_)
#undef PD_STATUS_NAME_
    }
    return "PD_ERR_UNKNOWN";
}

pd_status_t pd_status_from_name(const char *name)
{
#define PD_STATUS_CMP_(sym, value, msg)                                                            \
    if (strcmp(name, #sym) == 0)                                                                   \
        return sym;
    PD_STATUS_LIST(PD_STATUS_CMP_)
#undef PD_STATUS_CMP_
    return PD_ERR_INTERNAL;
}
