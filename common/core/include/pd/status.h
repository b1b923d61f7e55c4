/* pdkv status codes: one X-macro list generates the enum, the names and the messages. */
#ifndef PD_STATUS_H
#define PD_STATUS_H

/* X(NAME, value, message). PD_OK is 0, PD_INPROGRESS is 1, errors are negative. */
#define PD_STATUS_LIST(X)                                                                          \
    X(PD_OK, 0, "success")                                                                         \
    X(PD_INPROGRESS, 1, "operation in progress")                                                   \
    X(PD_ERR_NO_MEMORY, -1, "out of memory")                                                       \
    X(PD_ERR_INVALID_PARAM, -2, "invalid parameter")                                               \
    X(PD_ERR_IO, -3, "input/output error")                                                         \
    X(PD_ERR_FORMAT, -4, "malformed or corrupt file")                                              \
    X(PD_ERR_PROTO, -5, "malformed message")                                                       \
    X(PD_ERR_LIMIT, -6, "size limit exceeded")                                                     \
    X(PD_ERR_OUT_OF_RANGE, -7, "value out of range")                                               \
    X(PD_ERR_TIMEOUT, -8, "timed out")                                                             \
    X(PD_ERR_PEER, -9, "peer failed or disconnected")                                              \
    X(PD_ERR_UNREACHABLE, -10, "destination unreachable")                                          \
    X(PD_ERR_BUSY, -11, "resource busy")                                                           \
    X(PD_ERR_NOT_FOUND, -12, "not found")                                                          \
    X(PD_ERR_EXISTS, -13, "already exists")                                                        \
    X(PD_ERR_UNSUPPORTED, -14, "not supported")                                                    \
    X(PD_ERR_CHECKSUM, -15, "checksum mismatch")                                                   \
    X(PD_ERR_OVERLOADED, -16, "overloaded")                                                        \
    X(PD_ERR_CANCELED, -17, "canceled")                                                            \
    X(PD_ERR_NO_RESOURCE, -18, "no free resources")                                                \
    X(PD_ERR_AUTH, -19, "authentication failed")                                                   \
    X(PD_ERR_CONTEXT, -20, "prompt longer than the model context")                                 \
    X(PD_ERR_INTERNAL, -21, "internal error")                                                      \
    X(PD_ERR_PERMISSION, -22, "permission denied")

typedef enum pd_status {
#define PD_STATUS_ENUM_(name, value, msg) name = value,
    PD_STATUS_LIST(PD_STATUS_ENUM_)
#undef PD_STATUS_ENUM_
} pd_status_t;

/* On a function that returns a status: a caller that drops it gets a warning. A status
 * that is deliberately ignored is cast to void with a comment saying why. */
#define PD_MUST_CHECK __attribute__((warn_unused_result))

/* Drop a status on purpose (gcc does not take a cast to void for that); the call says why
 * beside it. */
static inline void pd_status_ignore(pd_status_t status)
{
    (void)status;
}

/* Human-readable message of a status; never NULL. */
const char *pd_status_str(pd_status_t status);

/* Symbolic name of a status ("PD_ERR_TIMEOUT"); never NULL. */
const char *pd_status_name(pd_status_t status);

/* The status of a failed system call's errno, converted once where it is first seen:
 * ENOENT is PD_ERR_NOT_FOUND, EACCES PD_ERR_PERMISSION, EADDRINUSE PD_ERR_BUSY, ...;
 * anything without its own status is PD_ERR_IO. */
PD_MUST_CHECK pd_status_t pd_status_from_errno(int err);

/* Reverse of pd_status_name; returns PD_ERR_INTERNAL for unknown names. */
PD_MUST_CHECK pd_status_t pd_status_from_name(const char *name);

#endif
