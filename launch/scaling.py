#!/usr/bin/python3
"""Data-parallel scaling study: the same training at several rank counts.

  launch/scaling.py [--ranks 1,2,4,8] [--hosts 1,2] [--mode strong|weak|both]
                    [--batch B] [--batch-per-rank b] [--data synthetic|fashion_mnist]
                    [--samples N] [--epochs E | --steps K] [--tcp] [--hostfile F] [--threads T]
                    [--trace] [--repeat R] [--timeout S] [--out DIR]
                    [--config CONFIG | CONFIG] [section.key=value ...]

Strong scaling keeps the global batch (training.batch_size=B) and the epoch
(N samples) fixed; weak scaling keeps the per-rank batch
(training.batch_size_per_rank=b) and the samples per rank fixed (N x ranks
samples per epoch; with fashion_mnist at most its 60,000). Every run goes
through launch/run.sh (so oversubscription, binding and BLAS threads follow
the machine) with training.save_checkpoints=false, training.validate_interval=0,
into DIR/runs/<mode>-r<ranks>/ (log: DIR/logs/). Each rank gets one OpenBLAS
thread (--threads), so that R ranks use R cores: at 1 rank the other cores
stay idle instead of running BLAS threads, which would blur what the ranks
gain (for LeNet-5 a second thread even slows a rank down).

CONFIG (default lenet5/baseline) is any config of the zoo (--config or the
first argument), e.g. configs/vgg/plain.yaml.

Hosts (--hosts H1,H2,...; checkout and root only): --ranks counts all ranks;
with H hosts every rank count R in --ranks that H divides runs as H hosts x
R/H ranks on namespace hosts of this machine (tests/e2e/hosts.sh: each its
own network, hostname, /dev/shm and /tmp; TCP between them over a bridge,
shared memory within; mpirun on the first, run.sh --hostfile, --bind none,
and mpi_yield_when_idle when the ranks outnumber this machine's cores).
H = 1 is a plain run on this machine. The checkout and --out are bound into
every host where they live under /tmp (each host has its own /tmp).

Measured epoch: the last record of each run's metrics.jsonl. With --epochs 2
(the default) the first epoch is a warm-up (first touch of buffers, BLAS
start-up) and is discarded; with --steps K the last, possibly partial, epoch
is the one reported. With --repeat R every configuration runs R times (in R
rounds over all of them) and the fastest run is reported (the one least
disturbed by other work on the machine); scaling.json lists every attempt
with the load average before it.

Writes into DIR (default studies/scaling-<UTC time>):
  scaling.csv     one row per run: mode, ranks, hosts, ranks_per_host,
                  global_batch, per_rank_batch,
                  steps, epoch_seconds, throughput (images/s), speedup,
                  efficiency, ms_per_step, comm_share (the share of the step
                  spent waiting for the gradient sum: time_comm_wait /
                  epoch_seconds), time_<phase> (seconds of the epoch,
                  mean over ranks) and time_<phase>_max (max over ranks) for
                  data, forward, backward, comm_wait, optimizer, checkpoint,
                  and time_other (epoch seconds not in any phase)
  scaling.json    the study's settings and every run (with its metrics record);
                  paths in it and in the CSV are relative to DIR
  table.md        the same as a markdown table
  throughput.png, efficiency.png   against ranks (a line per mode and host
                                   count), with the ideal
  breakdown-<mode>.png             per-phase ms per step, stacked, per rank count
                                   (HxR: H hosts x R ranks)
  plots.gp        the gnuplot script that drew them (rerun: gnuplot plots.gp)
  trace/          with --trace: <mode>-r<R>/rank-N.json as the ranks wrote them
                  (logging.trace=true) and <mode>-r<R>.json, all ranks in one
                  Chrome trace (open in chrome://tracing or ui.perfetto.dev)

Speedup is throughput over the smallest rank count's throughput (on the fewest
hosts); efficiency is speedup x smallest count / ranks (1.0 = perfect scaling,
strong or weak).
Exit status: 0 when every run succeeded, 1 when some failed (the rest is still
written), 2 on a usage error.
"""
import argparse
import csv
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if (HERE / "run.sh").exists() and (HERE.parent / "CMakeLists.txt").exists():
    # launch/scaling.py in a checkout: its launcher, build and studies/
    RUN_SH = HERE / "run.sh"
    PROGRAM = HERE.parent / "build" / "odyssey-dist"
    STUDIES = HERE.parent / "studies"
else:
    # installed as odyssey-scaling: the commands beside it, studies/ here
    RUN_SH = HERE / "odyssey-run"
    PROGRAM = HERE / "odyssey-dist"
    STUDIES = Path("studies")
PHASES = ["data", "forward", "backward", "comm_wait", "optimizer", "checkpoint"]
FASHION_MNIST_TRAIN = 60000


def fail(message, code=2):
    print(f"scaling.py: {message}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="launch/scaling.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", default="1,2,4,8", help="rank counts, comma-separated (default 1,2,4,8)")
    p.add_argument("--mode", choices=["strong", "weak", "both"], default="both")
    p.add_argument("--batch", type=int, default=256, help="strong: global batch (default 256)")
    p.add_argument("--batch-per-rank", type=int, default=64, help="weak: batch per rank (default 64)")
    p.add_argument("--data", choices=["synthetic", "fashion_mnist"], default="synthetic")
    p.add_argument("--samples", type=int, default=16384,
                   help="training samples per epoch at one rank (weak: x ranks; default 16384)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2; the last is measured)")
    length.add_argument("--steps", type=int, help="optimizer steps per run (training.max_steps) instead of epochs")
    p.add_argument("--hosts", default="1",
                   help="host counts, comma-separated (default 1): H > 1 runs on H namespace hosts")
    p.add_argument("--config", dest="config_opt", metavar="CONFIG", help="the config (as the CONFIG argument)")
    p.add_argument("--tcp", action="store_true", help="TCP-only transport (run.sh --tcp)")
    p.add_argument("--hostfile", help="several nodes (run.sh --hostfile)")
    p.add_argument("--threads", type=int, default=1,
                   help="OpenBLAS threads per rank (default 1; 0: run.sh's cores / ranks)")
    p.add_argument("--trace", action="store_true", help="Chrome traces per rank (logging.trace=true), collected")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per configuration; the fastest is reported (default 1)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed (default 1800)")
    p.add_argument("--out", help="study directory (default studies/scaling-<UTC time>)")
    p.add_argument("config", nargs="?", default="lenet5/baseline", help="CONFIG (default lenet5/baseline)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides for every run")
    a = p.parse_args(argv)
    try:
        a.ranks = sorted({int(r) for r in a.ranks.split(",")})
    except ValueError:
        fail(f"--ranks wants comma-separated integers, got '{a.ranks}'")
    if not a.ranks or a.ranks[0] < 1:
        fail("--ranks wants positive integers")
    try:
        a.hosts = sorted({int(h) for h in a.hosts.split(",")})
    except ValueError:
        fail(f"--hosts wants comma-separated integers, got '{a.hosts}'")
    if not a.hosts or a.hosts[0] < 1 or a.hosts[-1] > 250:
        fail("--hosts wants integers from 1 to 250")
    if a.hosts[-1] > 1 and (a.tcp or a.hostfile):
        fail("--hosts makes its own hosts: no --tcp or --hostfile with it")
    for name in ("batch", "batch_per_rank", "samples", "epochs", "steps", "repeat"):
        value = getattr(a, name)
        if value is not None and value < 1:
            fail(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if a.threads < 0:
        fail(f"--threads must be 0 or more, got {a.threads}")
    if "=" in a.config:
        a.overrides.insert(0, a.config)
        a.config = "lenet5/baseline"
    if a.config_opt:
        if a.config != "lenet5/baseline":
            a.overrides.insert(0, a.config)
        a.config = a.config_opt
    if os.path.isfile(a.config):  # a file: the same from the study's directories
        a.config = os.path.abspath(a.config)
    # (hosts, total ranks): H hosts for every rank count H divides
    a.points = [(h, r) for h in a.hosts for r in a.ranks if r % h == 0]
    if not a.points:
        fail("no rank count in --ranks is a multiple of a host count in --hosts")
    a.modes = ["strong", "weak"] if a.mode == "both" else [a.mode]
    return a


def program():
    return os.environ.get("ODYSSEY_BIN", str(PROGRAM))


def run_overrides(a, mode, ranks, study, name):
    """The overrides that make one run of the study."""
    samples = a.samples * (ranks if mode == "weak" else 1)
    o = [f"experiment.output_dir={study / 'runs'}", f"experiment.name={name}",
         "training.save_checkpoints=false", "training.validate_interval=0", "logging.progress=never"]
    if a.data == "synthetic":
        o += ["data.name=synthetic", f"data.synthetic_train={samples}", "data.synthetic_val=1"]
    else:
        o += ["data.name=fashion_mnist", f"data.limit_train={min(samples, FASHION_MNIST_TRAIN)}"]
    o += [f"training.batch_size={a.batch}"] if mode == "strong" else \
         [f"training.batch_size_per_rank={a.batch_per_rank}"]
    if a.steps:
        o += ["training.epochs=1000000", f"training.max_steps={a.steps}"]
    else:
        o += [f"training.epochs={a.epochs}"]
    if a.trace:
        o += ["logging.trace=true"]
    return o + a.overrides


class NamespaceHosts:
    """Hosts ody-h1 .. ody-hN out of Linux namespaces, made by the test
    harness (tests/e2e/hosts.sh) in a bash that holds them until its stdin
    closes; every process on them and the hosts themselves end with it."""

    HARNESS = HERE.parent / "tests" / "e2e" / "hosts.sh"
    AGENT = HERE.parent / "tests" / "e2e" / "hosts_agent.sh"
    SCRIPT = ('source "$1"; hosts_up "$2" >&2; echo "$hosts_dir $HOSTS_SUBNET"; '
              'read -r _ || true')

    def __init__(self, count, study):
        if not self.HARNESS.exists():
            fail(f"--hosts needs the test harness {self.HARNESS} (a checkout)")
        # The study directory is shared with the hosts like the checkout
        # (bound into each host when under /tmp, which is each host's own).
        env = dict(os.environ, ODY_PROGRAM=program(), ODY_SOURCE_DIR=str(HERE.parent),
                   ODY_BINARY_DIR=str(Path(program()).resolve().parent), HOSTS_EXTRA_KEEP=str(study))
        self.proc = subprocess.Popen(["bash", "-c", self.SCRIPT, "hosts", str(self.HARNESS), str(count)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            code = self.proc.wait()
            fail(f"could not make {count} namespace hosts (exit {code}; 77: namespaces not permitted)", 1)
        self.dir, self.subnet = Path(line[0]), line[1]
        self.pids = dict(l.split() for l in (self.dir / "map").read_text().splitlines())

    def command(self, hosts, ranks, study, threads):
        """run.sh on hosts x ranks/hosts ranks, mpirun on ody-h1."""
        hostfile = study / "hostfiles" / f"h{hosts}x{ranks // hosts}"
        hostfile.parent.mkdir(exist_ok=True)
        hostfile.write_text("".join(f"ody-h{i} slots={ranks // hosts}\n" for i in range(1, hosts + 1)))
        cmd = ["nsenter", "-t", self.pids["ody-h1"], "-n", "-u", "-m", f"--wd={study}", "env", "-u", "TMPDIR",
               f"ODY_HOSTS_MAP={self.dir / 'map'}", str(RUN_SH), "-np", str(ranks), "--hostfile", str(hostfile),
               "--bind", "none", "--mca", "plm_rsh_agent", str(self.AGENT), "--mca", "btl", "tcp,self,vader",
               "--mca", "btl_tcp_if_include", self.subnet, "--mca", "oob_tcp_if_include", self.subnet]
        if ranks > (os.cpu_count() or 1):  # the hosts share this machine's cores
            cmd += ["--mca", "mpi_yield_when_idle", "1"]
        return cmd + (["--threads", str(threads)] if threads else [])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def run_study(a, study):
    """Every configuration --repeat times, round by round (so that a burst of
    other work on the machine does not hit every attempt at one point); per
    configuration the fastest successful run's row, with every attempt listed
    (the fastest is the least disturbed)."""
    points = [(mode, hosts, ranks) for mode in a.modes for hosts, ranks in a.points]
    attempts = {point: [] for point in points}
    cluster = NamespaceHosts(a.hosts[-1], study) if a.hosts[-1] > 1 else None
    try:
        for k in range(1, a.repeat + 1):
            for mode, hosts, ranks in points:
                name = f"{mode}-" + (f"h{hosts}-" if hosts > 1 else "") + f"r{ranks}" + \
                       (f"-{k}" if a.repeat > 1 else "")
                attempts[(mode, hosts, ranks)].append(run_one(a, mode, ranks, study, name, hosts, cluster))
    finally:
        if cluster:
            cluster.close()
    rows = []
    for point in points:
        ok = [r for r in attempts[point] if r["exit_code"] == 0]
        best = max(ok, key=lambda r: r["throughput"]) if ok else attempts[point][-1]
        best["attempts"] = [{k: r.get(k) for k in ("run_dir", "exit_code", "throughput", "load_before")}
                            for r in attempts[point]]
        rows.append(best)
    return rows


def run_one(a, mode, ranks, study, name, hosts=1, cluster=None):
    """Run one configuration once; returns its row (without speedup/efficiency)."""
    if hosts > 1:
        cmd = cluster.command(hosts, ranks, study, a.threads)
    else:
        cmd = [str(RUN_SH), "-np", str(ranks)] + (["--tcp"] if a.tcp else []) + \
              (["--hostfile", a.hostfile] if a.hostfile else []) + \
              (["--threads", str(a.threads)] if a.threads else [])
    cmd += [a.config] + run_overrides(a, mode, ranks, study, name)
    log_path = study / "logs" / f"{name}.log"
    load_before = os.getloadavg()[0]
    print(f"scaling.py: {name}: {' '.join(cmd)}", flush=True)
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        try:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=a.timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    row = {"mode": mode, "ranks": ranks, "hosts": hosts, "ranks_per_host": ranks // hosts,
           "exit_code": code, "load_before": load_before,
           "run_dir": f"runs/{name}", "log": f"logs/{name}.log", "command": cmd}
    if code != 0:
        tail = log_path.read_text().strip().splitlines()[-3:]
        print(f"scaling.py: {name} failed (exit {code}): {' / '.join(tail)}", file=sys.stderr)
        return row
    records = [json.loads(line) for line in open(study / row["run_dir"] / "metrics.jsonl") if line.strip()]
    last = records[-1]
    steps = last["step"] - (records[-2]["step"] if len(records) > 1 else 0)
    global_batch = a.batch if mode == "strong" else a.batch_per_rank * ranks
    phase_sum = sum(last[f"time_{p}"] for p in PHASES)
    row.update({
        "global_batch": global_batch, "per_rank_batch": global_batch / ranks,
        "epoch": last["epoch"], "steps": steps, "epoch_seconds": last["epoch_seconds"],
        "throughput": last["samples_per_sec"],
        "ms_per_step": 1000 * last["epoch_seconds"] / steps if steps else 0.0,
        "world_size": last["world_size"],
    })
    for p in PHASES:
        row[f"time_{p}"] = last[f"time_{p}"]
        row[f"time_{p}_max"] = last[f"time_{p}_max"]
    row["time_other"] = max(0.0, last["epoch_seconds"] - phase_sum)
    row["comm_share"] = last["time_comm_wait"] / last["epoch_seconds"] if last["epoch_seconds"] else 0.0
    row["metrics"] = last
    if a.trace:
        row["trace"] = collect_traces(study, name)
    return row


def load_trace(path):
    """A Chrome trace file; the array form may lack its closing bracket."""
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.rstrip().rstrip(",") + "]")


def collect_traces(study, name):
    """Copy a run's per-rank traces and merge them into one Chrome trace;
    returns their paths relative to the study directory."""
    run_dir, trace_dir = study / "runs" / name, study / "trace"
    files = sorted((run_dir / "trace").glob("rank-*.json"), key=lambda f: int(f.stem.split("-")[1]))
    if not files:
        print(f"scaling.py: {name}: no traces in {run_dir / 'trace'}", file=sys.stderr)
        return {}
    (trace_dir / name).mkdir(parents=True, exist_ok=True)
    events = []
    for f in files:
        shutil.copy2(f, trace_dir / name / f.name)
        data = load_trace(f)
        events += data["traceEvents"] if isinstance(data, dict) else data
    merged = trace_dir / f"{name}.json"
    merged.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    return {"ranks": [f"trace/{name}/{f.name}" for f in files], "merged": f"trace/{name}.json"}


def add_speedup(rows):
    for mode in {r["mode"] for r in rows}:
        ok = sorted((r for r in rows if r["mode"] == mode and r["exit_code"] == 0),
                    key=lambda r: (r["ranks"], r["hosts"]))
        if not ok:
            continue
        base = ok[0]
        for r in ok:
            r["speedup"] = r["throughput"] / base["throughput"]
            r["efficiency"] = r["speedup"] * base["ranks"] / r["ranks"]


CSV_FIELDS = (["mode", "ranks", "hosts", "ranks_per_host", "global_batch", "per_rank_batch", "epoch", "steps",
               "epoch_seconds", "throughput", "speedup", "efficiency", "ms_per_step", "comm_share"]
              + [f"time_{p}{s}" for p in PHASES for s in ("", "_max")] + ["time_other", "exit_code", "run_dir"])


def ranks_label(r, short=False):
    """'4' on this machine; '4 (2 hosts x 2)' (short: '2x2') on namespace hosts."""
    if r.get("hosts", 1) == 1:
        return str(r["ranks"])
    return f"{r['hosts']}x{r['ranks_per_host']}" if short else \
        f"{r['ranks']} ({r['hosts']} hosts x {r['ranks_per_host']})"


def write_tables(rows, study):
    with open(study / "scaling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = ["| mode | ranks | global batch | images/s | speedup | efficiency | ms/step | waiting for the sum | "
             + " | ".join(PHASES) + " | other |",
             "| --- " * (9 + len(PHASES)) + "|"]
    for r in rows:
        if r["exit_code"] != 0:
            lines.append(f"| {r['mode']} | {ranks_label(r)} | failed (exit {r['exit_code']}) |")
            continue
        per_step = [1000 * r[f"time_{p}"] / r["steps"] for p in PHASES + ["other"]]
        lines.append(f"| {r['mode']} | {ranks_label(r)} | {r['global_batch']} | {r['throughput']:.0f} | "
                     f"{r['speedup']:.2f} | {r['efficiency']:.0%} | {r['ms_per_step']:.2f} | "
                     f"{r['comm_share']:.0%} | " + " | ".join(f"{t:.2f}" for t in per_step) + " |")
    (study / "table.md").write_text(
        "Per-phase columns: ms per step, mean over ranks; waiting for the sum: time_comm_wait / "
        "epoch time.\n\n" + "\n".join(lines) + "\n")
    return "\n".join(lines)


def gnuplot_terminal():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    listing = r.stdout + r.stderr
    if " pngcairo " in listing:
        return "pngcairo size 900,600 enhanced font 'Sans,11'"
    if " png " in listing:
        return "png size 900,600"
    return None


def write_plots(rows, study, a):
    """Write the plot data and gnuplot script, and run gnuplot if it is there."""
    ok = [r for r in rows if r["exit_code"] == 0]
    modes = [m for m in a.modes if any(r["mode"] == m for r in ok)]
    if not modes:
        return []
    series = []  # (mode, hosts, data file): a line in the throughput and efficiency plots
    for m in modes:
        mode_rows = sorted((r for r in ok if r["mode"] == m), key=lambda r: (r["ranks"], r["hosts"]))
        base = mode_rows[0]

        def line(r, first):
            ideal = base["throughput"] * r["ranks"] / base["ranks"]
            per_step = [1000 * r[f"time_{p}"] / r["steps"] for p in PHASES + ["other"]]
            return (f"{first} {r['throughput']:.6g} {ideal:.6g} {100 * r['efficiency']:.6g} "
                    + " ".join(f"{t:.6g}" for t in per_step) + "\n")
        head = " throughput ideal efficiency " + " ".join(PHASES) + " other (ms per step)\n"
        for h in sorted({r["hosts"] for r in mode_rows}):
            name = f"plot-{m}.dat" if h == 1 else f"plot-{m}-h{h}.dat"
            with open(study / name, "w") as f:
                f.write(f"# ranks ({h} host(s))" + head)
                f.writelines(line(r, r["ranks"]) for r in mode_rows if r["hosts"] == h)
            series.append((m, h, name))
        # the breakdown: every point of the mode, a label per bar (HxR on hosts)
        with open(study / f"breakdown-{m}.dat", "w") as f:
            f.write("# point" + head)
            f.writelines(line(r, ranks_label(r, short=True))
                         for r in sorted(mode_rows, key=lambda r: (r["hosts"], r["ranks"])))
    ranks = sorted({r["ranks"] for r in ok})
    xtics = ", ".join(f'"{n}" {n}' for n in ranks)
    where = f"{socket.gethostname()}, {os.cpu_count()} cores"
    setup = [f"set xtics ({xtics})", "set logscale x 2", f"set xrange [{ranks[0] / 1.3}:{ranks[-1] * 1.3}]",
             "set grid", "set key top left", "set xlabel 'MPI ranks'"]
    cores = os.cpu_count() or 1
    if ranks[0] <= cores < ranks[-1] and not a.hostfile:
        # Beyond this line the ranks share cores (oversubscribed).
        setup += [f"set arrow 1 from {cores}, graph 0 to {cores}, graph 1 nohead dt 3 lc rgb 'gray40'",
                  f"set label 1 '{cores} cores' at {cores}, graph 0.97 offset 0.5,0 left textcolor rgb 'gray40'"]
    colors = {"strong": "#1f77b4", "weak": "#d62728"}
    gp = [f"set terminal {gnuplot_terminal() or 'pngcairo'}",
          f"set output '{study / 'throughput.png'}'",
          f"set title 'Training throughput ({where})'", "set ylabel 'images / s'", "set yrange [0:*]"] + setup
    points = {1: 7, 2: 5, 3: 9, 4: 13}

    def title(m, h):
        return f"{m} scaling" if h == 1 else f"{m}, {h} hosts"
    gp.append("plot " + ", ".join(
        f"'{study / name}' using 1:2 with linespoints lw 2 pt {points.get(h, 7)} lc rgb '{colors[m]}' "
        f"dt {1 if h == 1 else 4} title '{title(m, h)}'" for m, h, name in series) + ", " + ", ".join(
        f"'{study / name}' using 1:3 with lines dt 2 lc rgb '{colors[m]}' title '{m}: ideal'"
        for m, h, name in series if h == min(hh for mm, hh, _ in series if mm == m)))
    gp += [f"set output '{study / 'efficiency.png'}'", f"set title 'Parallel efficiency ({where})'",
           "set ylabel 'efficiency (%)'", "set yrange [0:*]", "set key top right"]
    gp.append("plot 100 with lines dt 2 lc rgb 'gray40' title 'ideal', " + ", ".join(
        f"'{study / name}' using 1:4 with linespoints lw 2 pt {points.get(h, 7)} lc rgb '{colors[m]}' "
        f"dt {1 if h == 1 else 4} title '{title(m, h)}'" for m, h, name in series))
    gp += ["unset arrow 1", "unset label 1", "unset logscale x", "set autoscale x", "set xtics ()", "set yrange [0:*]", "set key invert",
           "set style data histograms", "set style histogram rowstacked", "set style fill solid 0.85 border -1",
           "set boxwidth 0.6", "set key outside right top", "set ylabel 'ms per step (mean over ranks)'"]
    if a.hosts[-1] > 1:
        gp.append("set xlabel 'MPI ranks (HxR: H namespace hosts x R ranks)'")
    for m in modes:
        columns = ", ".join(
            (f"'{study / f'breakdown-{m}.dat'}' using {5 + i}:xtic(1)" if i == 0 else f"'' using {5 + i}")
            + f" title '{p.replace('_', ' ')}'" for i, p in enumerate(PHASES + ["other"]))
        batch = f"global batch {a.batch}" if m == "strong" else f"{a.batch_per_rank} per rank"
        gp += [f"set output '{study / f'breakdown-{m}.png'}'",
               f"set title 'Where a step goes: {m} scaling, {batch} ({where})'",
               f"plot {columns}"]
    (study / "plots.gp").write_text("\n".join(gp) + "\n")
    if not shutil.which("gnuplot"):
        print("scaling.py: gnuplot not found: plots.gp written, no PNGs", file=sys.stderr)
        return []
    r = subprocess.run(["gnuplot", str(study / "plots.gp")], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"scaling.py: gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
        return []
    return ["throughput.png", "efficiency.png"] + [f"breakdown-{m}.png" for m in modes]


def main(argv):
    a = parse_args(argv)
    if not os.access(program(), os.X_OK):
        fail(f"{program()} not found: run launch/setup.sh first")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    study = Path(a.out or STUDIES / f"scaling-{stamp}").resolve()
    (study / "logs").mkdir(parents=True, exist_ok=True)
    rows = run_study(a, study)
    add_speedup(rows)
    table = write_tables(rows, study)
    plots = write_plots(rows, study, a)
    settings = {k: v for k, v in vars(a).items() if k not in ("mode",)}
    settings.update({"command": [sys.argv[0]] + argv, "started_utc": stamp, "host": socket.gethostname(),
                     "cores": os.cpu_count(), "program": program(),
                     "measured_epoch": "last record of metrics.jsonl" +
                     (" (the first epoch is a warm-up)" if not a.steps and a.epochs > 1 else ""),
                     "oversubscribed_ranks": [n for n in a.ranks if n > (os.cpu_count() or 1)]})
    (study / "scaling.json").write_text(json.dumps({"study": settings, "runs": rows, "plots": plots}, indent=2) + "\n")
    print(table)
    print(f"scaling.py: study in {study}")
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
