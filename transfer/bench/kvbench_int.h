/* pd-kvbench internals: options, points, the two-process link, comparison points. */
#ifndef PD_KVBENCH_INT_H
#define PD_KVBENCH_INT_H

#include "pd/xfer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KB_MAX_LIST 16
#define KB_MAX_OPS  4 /* ucx_perftest operations compared per point */

typedef struct kb_transport {
    char name[16];
    const char *tls;
    char tx_devices[32]; /* sender's UCX_NET_DEVICES ("" for all) */
    char rx_devices[32]; /* receiver's */
    char netns[32];      /* receiver's namespace ("" for none) */
    char rx_host[32];    /* receiver's address for ucx_perftest */
} kb_transport_t;

typedef struct kb_opts {
    size_t pool_bytes;
    size_t block_sizes[KB_MAX_LIST];
    int n_block_sizes;
    uint32_t blocks[KB_MAX_LIST];
    int n_blocks;
    uint32_t layers[KB_MAX_LIST];
    int n_layers;
    char transports[KB_MAX_LIST][16];
    int n_transports;
    int checksum_modes[2]; /* 1 on, 0 off */
    int n_checksum_modes;
    int coalesce_modes[2];
    int n_coalesce_modes;
    pd_xfer_data_path_t data_paths[3];
    int n_data_paths;
    uint32_t window;
    double point_bytes;
    double max_seconds;
    int repeats;
    bool perftest;
    bool spin;
    bool register_pool;
    char perftest_ops[KB_MAX_OPS][16]; /* ucx_perftest tests, e.g. tag_bw */
    int n_perftest_ops;
    const char *json_path;
    const char *plot_path;
} kb_opts_t;

typedef struct kb_point {
    char transport[16];
    size_t block_bytes;
    uint32_t blocks, layers;
    bool checksum, coalesce;
    pd_xfer_data_path_t data_path; /* the one the link used (never AUTO) */
    uint64_t batches, failed;
    uint64_t ops_per_batch;
    double gbps;                      /* median over repeats, 1e9 bytes per second */
    double p50_us, p99_us;            /* batch latency, begin to acknowledged */
    double perftest_gbps[KB_MAX_OPS]; /* median per operation, same transport and size */
    int best_op;                      /* index of the fastest operation, -1 if none ran */
    double memcpy_gbps;               /* median of the copies between this point's repeats */
} kb_point_t;

/* The memcpy comparison: two pools' worth of memory, sampled between repeats. */
typedef struct kb_memcpy {
    uint8_t *src, *dst; /* (bytes) each */
    size_t bytes;
} kb_memcpy_t;

/* ucx_perftest samples for one transport and block size, over every operation; runs
 * alternate with the fabric's repeats, so both see the same machine. */
typedef struct kb_perf_samples {
    double v[KB_MAX_OPS][32];
    int n[KB_MAX_OPS];
} kb_perf_samples_t;

typedef struct kb_link {
    pid_t child;
    int sock;
    pd_xfer_engine_t *engine;
    pd_xfer_peer_t *peer;
    uint8_t *pool; /* (pool_bytes) sender's pool */
    bool register_pool;
    int efd;
    uint64_t next_id;
} kb_link_t;

int kb_parse_size(const char *s, size_t *out);
int kb_parse_list(const char *arg, char items[][16], int max);
const char *kb_size_str(size_t b, char *buf, size_t n);
double kb_percentile(double *v, size_t n, double p);
uint8_t *kb_pool_alloc(size_t bytes, uint8_t seed);
int kb_link_open(kb_link_t *link, const kb_transport_t *t, bool checksum, bool coalesce,
                 pd_xfer_data_path_t data_path, size_t pool_bytes, bool register_pool);
void kb_link_close(kb_link_t *link);
int kb_run_point(kb_link_t *link, const kb_opts_t *o, kb_point_t *pt, double *gbps_p);
double kb_memcpy_once(const uint8_t *src, uint8_t *dst, size_t bytes, size_t chunk);
double kb_memcpy_gbps(const uint8_t *src, uint8_t *dst, size_t bytes, size_t chunk, int reps);
double kb_hash_gbps(const uint8_t *src, size_t bytes, size_t chunk, int reps);
double kb_perftest_gbps(const kb_opts_t *o, const kb_transport_t *t, const char *test, size_t size);
const char *kb_transport_setup(const char *name, kb_transport_t *t);
void kb_table_header(void);
void kb_table_row(const kb_opts_t *o, const kb_point_t *p);
int kb_json_write(const char *path, const kb_opts_t *o, const kb_point_t *pts, int n,
                  double memcpy_gbps, double hash_gbps, char skipped[][96], int n_skipped);
int kb_plot_write(const char *path, const kb_point_t *pts, int n, double memcpy_gbps);
void kb_netns_teardown(void);

#endif
