/* pdctl render: a manifest as a Slurm batch script or as Kubernetes objects. */
#ifndef PD_RENDER_H
#define PD_RENDER_H

#include "pd/manifest.h"

#include <stdio.h>

/* What the renderers read: the parsed manifest, its text (embedded verbatim, so that
 * every role reads the very file the user wrote) and where the binaries live. */
typedef struct pd_render_input {
    pd_manifest_t m;
    const char *text;    /* the manifest file's bytes, NUL-terminated */
    const char *source;  /* the manifest's path, for the header comment */
    const char *bin_dir; /* Slurm: directory of pd-router etc.; "" = the PATH */
} pd_render_input_t;

/* Write the sbatch script; returns 0, or -1 with the reason on stderr. */
int pd_render_slurm(const pd_render_input_t *in, FILE *out);

/* Write the Kubernetes objects as one multi-document YAML stream; 0 or -1. */
int pd_render_k8s(const pd_render_input_t *in, FILE *out);

/* The memory a role's process asks for, MiB: memory_mb, else 512 plus its pools. */
uint32_t pd_render_memory_mb(const pd_manifest_t *m, const char *role);

/* The CPUs a role's process asks for: cpus, else its threads (at least 1). */
uint32_t pd_render_cpus(const pd_manifest_t *m, const char *role);

#endif
