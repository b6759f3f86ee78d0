/*
 * core: how many cores this process may use. Not sysconf's online count:
 * inside a SLURM allocation or a container a process may run on fewer, as
 * its affinity mask (sched_getaffinity: SLURM's --cpus-per-task, taskset,
 * mpirun's binding, a cpuset) and its cgroup v2 CPU quota (cpu.max, e.g.
 * docker --cpus) say. A node's count is the union of its ranks' masks:
 * ranks bound to one core each still share the node's cores between them.
 * cgroup v1 quotas are not read (a v1 cpuset shows in the mask).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT_S */
#include "odyssey/core.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The affinity masks exchanged between ranks: the same size on every rank. */
#define MASK_CPUS 8192

int ody_cpu_max_parse(const char *text)
{
    char quota[32];
    long long period = 0;
    int used = 0;
    if (sscanf(text, "%31s %lld %n", quota, &period, &used) != 2 || text[used] != '\0' ||
        period <= 0)
        return -1;
    if (strcmp(quota, "max") == 0)
        return 0;
    char *end = NULL;
    errno = 0;
    long long q = strtoll(quota, &end, 10);
    if (errno || *end || q <= 0)
        return -1;
    long long cores = (q + period - 1) / period; /* a fraction of a core is a core */
    return cores > INT_MAX ? INT_MAX : (int)cores;
}

int ody_cpu_max_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char text[128];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    int cores = ody_cpu_max_parse(text);
    return cores > 0 ? cores : 0;
}

/* The smallest quota on the way from the cgroup at `path` (under root) up
 * to root, where `path` is this process's cgroup v2 path ("/a/b"). */
static int quota_along(const char *root, const char *path)
{
    char dir[PATH_MAX], file[PATH_MAX + 16];
    if (snprintf(dir, sizeof dir, "%s%s", root, path) >= (int)sizeof dir)
        return 0;
    size_t rootlen = strlen(root);
    int best = 0;
    for (;;) {
        snprintf(file, sizeof file, "%s/cpu.max", dir);
        int q = ody_cpu_max_read(file);
        if (q > 0 && (best == 0 || q < best))
            best = q;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < rootlen)
            break;
        *slash = '\0';
    }
    return best;
}

int ody_cgroup_cpu_limit(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[PATH_MAX + 16];
    int best = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) != 0) /* the cgroup v2 line */
            continue;
        line[strcspn(line, "\n")] = '\0';
        const char *path = line + 3;
        best = quota_along("/sys/fs/cgroup", strcmp(path, "/") == 0 ? "" : path);
    }
    if (f)
        fclose(f);
    /* Inside a cgroup namespace the path may not resolve: the root's own. */
    int root = ody_cpu_max_read("/sys/fs/cgroup/cpu.max");
    if (root > 0 && (best == 0 || root < best))
        best = root;
    return best;
}

/* This process's affinity mask into mask (MASK_CPUS bits); false when unknown. */
static bool own_mask(cpu_set_t *mask)
{
    size_t size = CPU_ALLOC_SIZE(MASK_CPUS);
    CPU_ZERO_S(size, mask);
    return sched_getaffinity(0, size, mask) == 0 && CPU_COUNT_S(size, mask) > 0;
}

int ody_affinity_cores(void)
{
    cpu_set_t *mask = CPU_ALLOC(MASK_CPUS);
    int n = mask && own_mask(mask) ? CPU_COUNT_S(CPU_ALLOC_SIZE(MASK_CPUS), mask) : 0;
    CPU_FREE(mask);
    if (n > 0)
        return n;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/* Cores of the union of the node's masks (collective over node_comm). */
static int node_union(MPI_Comm node_comm, int *out)
{
    size_t size = CPU_ALLOC_SIZE(MASK_CPUS);
    cpu_set_t *mask = CPU_ALLOC(MASK_CPUS), *all = CPU_ALLOC(MASK_CPUS);
    int have = mask && all && own_mask(mask), every = 0;
    int rc = MPI_Allreduce(&have, &every, 1, MPI_INT, MPI_MIN, node_comm);
    *out = 0;
    if (rc == MPI_SUCCESS && every) {
        rc = MPI_Allreduce(mask, all, (int)size, MPI_UNSIGNED_CHAR, MPI_BOR, node_comm);
        if (rc == MPI_SUCCESS)
            *out = CPU_COUNT_S(size, all);
    }
    CPU_FREE(mask);
    CPU_FREE(all);
    return rc;
}

int ody_node_cores(MPI_Comm node_comm, int *cores)
{
    int n = 0;
    int rc = node_union(node_comm, &n);
    if (n <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    int quota = ody_cgroup_cpu_limit();
    *cores = quota > 0 && quota < n ? quota : n;
    return rc;
}
