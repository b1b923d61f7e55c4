/* The UCX backend's data path per peer: one-sided puts where a lane's transport does RMA
 * natively, active messages where UCX would emulate puts (TCP, unmapped shared memory). */
#include "xfer_ucx_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ucp_ep_print_info lists the lanes as "... lane[0]: 1:posix/memory.0 md[1] ...": keep the
 * distinct "transport/device" names. */
pd_status_t pd_xfer__ucx_transports(pd_xfer_peer_t *peer, char *buf, size_t buf_bytes)
{
    pd_xfer__ucx_peer_t *up = peer->be;
    char *text = NULL;
    size_t text_bytes = 0;
    FILE *f = open_memstream(&text, &text_bytes);
    if (f == NULL)
        return PD_ERR_NO_MEMORY;
    ucp_ep_print_info(up->ep, f);
    fclose(f);
    size_t used = 0;
    buf[0] = '\0';
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *lane = strstr(line, "lane[");
        if (lane == NULL)
            continue;
        char *colon = strchr(lane, ':');
        if (colon == NULL)
            continue;
        char *p = colon + 1;
        while (*p == ' ')
            p++;
        /* Skip the "rsc_index:" prefix. */
        char *idx_end = strchr(p, ':');
        if (idx_end != NULL && idx_end - p < 4)
            p = idx_end + 1;
        char name[64];
        size_t n = 0;
        while (p[n] != '\0' && p[n] != ' ' && p[n] != '.' && n + 1 < sizeof(name)) {
            name[n] = p[n];
            n++;
        }
        name[n] = '\0';
        if (n == 0 || strstr(buf, name) != NULL)
            continue;
        int w = snprintf(buf + used, buf_bytes - used, "%s%s", used ? " " : "", name);
        if (w < 0 || (size_t)w >= buf_bytes - used)
            break;
        used += (size_t)w;
    }
    free(text);
    return used > 0 ? PD_OK : PD_ERR_NOT_FOUND;
}

/* Transports whose puts UCX 1.13 does not do natively into memory it cannot map: TCP
 * emulates every put through active messages, and the shared-memory transports reach
 * only segments they allocated (pd_xfer_mem_alloc), which ucp_rkey_ptr maps. */
static bool pd_xfer__ucx_tl_emulates_put(const char *tl)
{
    static const char *const names[] = {"tcp", "posix", "sysv", "xpmem", "cma", "knem"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(tl, names[i]) == 0)
            return true;
    }
    return false;
}

/* AUTO: puts when the peer's region is mapped here (shared memory: a put is a copy), or
 * when a lane that carries puts is an RDMA transport (verbs); active messages otherwise,
 * TCP above all. ucp_ep_print_info lists "lane[i]: idx:tl/dev ..." and one "put[i]" line
 * per lane with native puts. */
pd_xfer_data_path_t pd_xfer__ucx_data_path(pd_xfer_peer_t *peer)
{
    pd_xfer__ucx_peer_t *up = peer->be;
    if (peer->engine->cfg.data_path != PD_XFER_DATA_PATH_AUTO)
        return peer->engine->cfg.data_path;
    void *mapped = NULL;
    if (ucp_rkey_ptr(up->rkey, peer->remote_base, &mapped) == UCS_OK && mapped != NULL)
        return PD_XFER_DATA_PATH_PUT;
    char *text = NULL;
    size_t text_bytes = 0;
    FILE *f = open_memstream(&text, &text_bytes);
    if (f == NULL)
        return PD_XFER_DATA_PATH_AM;
    ucp_ep_print_info(up->ep, f);
    fclose(f);
    char lane_tl[16][16] = {{0}};
    bool native = false;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned lane = 0;
        char tl[16];
        const char *p = strstr(line, "lane[");
        if (p != NULL && sscanf(p, "lane[%u]: %*u:%15[^/]", &lane, tl) == 2 && lane < 16) {
            memcpy(lane_tl[lane], tl, sizeof(tl));
            continue;
        }
        p = strstr(line, "put[");
        if (p != NULL && sscanf(p, "put[%u]", &lane) == 1 && lane < 16 && lane_tl[lane][0] &&
            !pd_xfer__ucx_tl_emulates_put(lane_tl[lane]))
            native = true;
    }
    free(text);
    return native ? PD_XFER_DATA_PATH_PUT : PD_XFER_DATA_PATH_AM;
}
