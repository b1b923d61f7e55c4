#include "pd/status.h"

#include <errno.h>
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

pd_status_t pd_status_from_errno(int err)
{
    switch (err) {
    case 0:
        return PD_OK;
    case ENOENT:
    case ENOTDIR:
    case ENXIO:
        return PD_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return PD_ERR_PERMISSION;
    case EEXIST:
        return PD_ERR_EXISTS;
    case ENOMEM:
        return PD_ERR_NO_MEMORY;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
        return PD_ERR_NO_RESOURCE;
    case EADDRINUSE:
    case EBUSY:
        return PD_ERR_BUSY;
    case EADDRNOTAVAIL:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return PD_ERR_UNREACHABLE;
    case ETIMEDOUT:
        return PD_ERR_TIMEOUT;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
        return PD_ERR_INVALID_PARAM;
    case ECANCELED:
    case EINTR:
        return PD_ERR_CANCELED;
    case ENOTSUP:
        return PD_ERR_UNSUPPORTED;
    default:
        return PD_ERR_IO;
    }
}
