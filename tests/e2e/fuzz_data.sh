#!/usr/bin/env bash
# Fuzzing the data readers: IDX files (raw and gzip) and HDF5 data files
# with mutated headers (counts, dimensions, magic), truncations, trailing
# data, out-of-range labels, corrupt gzip streams and HDF5 shapes that
# claim more samples than the file holds. Every run must end with exit 0
# or 3 (a data error naming a file of the case) within RUN_SECONDS, never a
# signal, a hang or an allocation the size of a corrupt claim (address
# space capped by RLIMIT_AS, peak RSS checked). Mutations that must be
# caught (a changed count, magic or shape, a cut, a bad label) must exit 3;
# flipped pixels must not.
#
# Seeded and short in the suite (ODY_FUZZ_ROUNDS=80 random cases, seed
# ODY_FUZZ_SEED=19, plus fixed cases); for a longer search, e.g.
#   ODY_FUZZ_ROUNDS=2000 ODY_FUZZ_SEED=random ctest -R e2e_fuzz_data
# A failure prints the case, its log and the seed that reproduces it.
# HDF5 metadata itself (object headers, B-trees) is not mutated at random:
# HDF5 1.10 does not promise to survive that, and our code does not parse it.
source "$(dirname "$0")/common.sh"

if [ ! -r "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  echo "skipped: $FMNIST is missing (apt-get install dataset-fashion-mnist)"
  exit 0
fi
rounds="${ODY_FUZZ_ROUNDS:-80}"
seed="${ODY_FUZZ_SEED:-19}"
[ "$seed" = random ] && seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
sanitized=0
# (not `ldd | grep -q`: grep's early exit makes ldd die of SIGPIPE, which
# pipefail turns into "not sanitized")
case "$(ldd "$ODY_PROGRAM")" in *libasan*) sanitized=1 ;; esac

note "seed $seed, $rounds random cases (ODY_FUZZ_SEED, ODY_FUZZ_ROUNDS)"
mkdir base
fmnist_cut base 200 50

/usr/bin/python3 - "$ODY_PROGRAM" "$scratch" "$seed" "$rounds" "$sanitized" <<'PY'
import gzip, os, random, resource, signal, struct, subprocess, sys, time

prog, scratch, seed, rounds, sanitized = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5] == "1"
try:
    import h5py, numpy as np
except ImportError:
    h5py = None
    print("--- no h5py for /usr/bin/python3: HDF5 cases skipped (apt-get install python3-h5py)")

RUN_SECONDS = 30 if sanitized else 10        # a normal run here takes about 0.5 s
RSS_LIMIT_KB = (1024 if sanitized else 256) << 10
AS_LIMIT = None if sanitized else 4 << 30   # ASan reserves terabytes of address space
rng = random.Random(seed)
NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
base = {n: gzip.open(f"{scratch}/base/{n}.gz").read() for n in NAMES}
COMMON = ["lenet5/baseline", "training.epochs=1", "training.max_steps=2",
          "training.batch_size=32", "training.save_checkpoints=false", "logging.plot=false",
          "logging.csv=false", "distributed.blas_threads=1",
          f"experiment.output_dir={scratch}/out"]

# ------------------------------------------------------------------ IDX

def header_len(data):
    return 4 + 4 * data[3]

def put_u32(data, offset, value):
    return data[:offset] + struct.pack(">I", value) + data[offset + 4:]

def other_than(value, choices):
    return rng.choice([c for c in choices if c != value])

def mutate_count(files, name):
    n = struct.unpack(">I", files[name][4:8])[0]
    claim = other_than(n, [0, 1, n - 1, n + 1, 2 * n, 16318720, 2**32 - 1,
                           rng.randrange(1, 2**32)])
    files[name] = put_u32(files[name], 4, claim)
    return f"{name}: count {n} -> {claim}", {3}

def mutate_side(files, _):
    name = rng.choice([NAMES[0], NAMES[2]])
    side = rng.choice([8, 12])
    value = other_than(28, [0, 1, 14, 27, 29, 56, 65535, 65536, 65537, 2**32 - 1,
                            rng.randrange(2**32)])
    files[name] = put_u32(files[name], side, value)
    return f"{name}: dimension {(side - 4) // 4} 28 -> {value}", {3}

def mutate_magic(files, name):
    old = struct.unpack(">I", files[name][:4])[0]
    if rng.random() < 0.5:
        new = other_than(old, [rng.randrange(2**32)])
    else:  # one byte: the type, the number of dimensions or the zero bytes
        k = rng.randrange(4)
        new = old ^ (rng.randrange(1, 256) << (8 * k))
    files[name] = put_u32(files[name], 0, new)
    return f"{name}: magic 0x{old:08x} -> 0x{new:08x}", {3}

def mutate_cut(files, name):
    keep = rng.randrange(len(files[name]))
    files[name] = files[name][:keep]
    return f"{name}: cut to {keep} of {len(base[name])} bytes", {3}

def mutate_append(files, name):
    extra = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1000)))
    files[name] += extra
    return f"{name}: {len(extra)} bytes appended", {3}

def mutate_label(files, _):
    name = rng.choice([NAMES[1], NAMES[3]])
    data = bytearray(files[name])
    for _ in range(rng.randrange(1, 6)):
        k = rng.randrange(header_len(data), len(data))
        data[k] = rng.randrange(10, 256)
    files[name] = bytes(data)
    return f"{name}: labels out of range", {3}

def mutate_pixels(files, _):
    name = rng.choice([NAMES[0], NAMES[2]])
    data = bytearray(files[name])
    for _ in range(rng.randrange(1, 50)):
        data[rng.randrange(header_len(data), len(data))] ^= rng.randrange(1, 256)
    files[name] = bytes(data)
    return f"{name}: pixels flipped", {0}

IDX_MUTATIONS = [mutate_count, mutate_side, mutate_magic, mutate_cut, mutate_append,
                 mutate_label, mutate_pixels]

# Mutations of the gzip stream itself: (compressed bytes) -> (bytes, what, expected).
def gz_cut(z):
    keep = rng.randrange(len(z))
    return z[:keep], f"gzip cut to {keep} of {len(z)} bytes", {3}

def gz_flip(z):
    z = bytearray(z)
    at = rng.randrange(10, len(z))
    z[at] ^= rng.randrange(1, 256)
    return bytes(z), f"gzip byte {at} flipped", {0, 3}

def gz_header(z):
    z = bytearray(z)
    at = rng.randrange(10)
    z[at] ^= rng.randrange(1, 256)
    return bytes(z), f"gzip header byte {at} flipped", {0, 3}

def gz_garbage(z):
    extra = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
    return z + extra, f"{len(extra)} bytes after the gzip member", {0, 3}

GZ_MUTATIONS = [gz_cut, gz_flip, gz_header, gz_garbage]

def write_idx_case(path, files, gz, stream_mutation=None):
    os.makedirs(path)
    what, expect = "", None
    target = rng.choice(NAMES) if stream_mutation else None
    for name, data in files.items():
        if not gz:
            open(f"{path}/{name}", "wb").write(data)
            continue
        z = gzip.compress(data, compresslevel=1, mtime=0)
        if name == target:
            z, what, expect = stream_mutation(z)
            what = f"{name}.gz: {what}"
        open(f"{path}/{name}.gz", "wb").write(z)
    return what, expect

def idx_case(path, gz):
    files = dict(base)
    if gz and rng.random() < 0.3:
        what, expect = write_idx_case(path, files, gz, rng.choice(GZ_MUTATIONS))
    else:
        mutation = rng.choice(IDX_MUTATIONS)
        what, expect = mutation(files, rng.choice(NAMES))
        write_idx_case(path, files, gz)
    return ["data.name=mnist", f"data.path={path}"], ("gzip " if gz else "raw ") + what, expect

def idx_claim_case(path, gz):
    """The issue's case: 255 images of data under a header claiming 16,318,720."""
    files = dict(base)
    files[NAMES[0]] = put_u32(base[NAMES[0]], 4, 16318720)[:16 + 255 * 784]
    write_idx_case(path, files, gz)
    return (["data.name=mnist", f"data.path={path}"],
            ("gzip" if gz else "raw") + ": 255 images under a header claiming 16318720", {3})

# ----------------------------------------------------------------- HDF5

def arrays(group):
    prefix = "train" if group == "train" else "t10k"
    images = base[f"{prefix}-images-idx3-ubyte"]
    labels = base[f"{prefix}-labels-idx1-ubyte"]
    n = len(labels) - 8
    return (np.frombuffer(images, np.uint8, offset=16).reshape(n, 1, 28, 28),
            np.frombuffer(labels, np.uint8, offset=8).astype(np.int64))

def write_h5(path, images=None, labels=None, chunk=None, compress=False, label_type=np.int64,
             attrs=None):
    with h5py.File(path, "w") as f:
        for group in ("train", "test"):
            x, y = arrays(group)
            if group == "train":
                x = x if images is None else images
                y = y if labels is None else labels
            opts = {}
            if chunk:
                opts["chunks"] = (min(chunk, max(len(x), 1)),) + tuple(x.shape[1:])
            if compress:
                opts["compression"] = "gzip"
            f.create_dataset(f"{group}/images", data=x, **opts)
            f.create_dataset(f"{group}/labels", data=y.astype(label_type))
        for key, value in (attrs or {}).items():
            f.attrs[key] = value

def h5_valid(path):
    x, _ = arrays("train")
    choice = rng.randrange(4)
    if choice == 0:
        write_h5(path, chunk=rng.randrange(1, 300), compress=rng.random() < 0.5)
    elif choice == 1:
        write_h5(path, images=x.reshape(-1, 28, 28), label_type=rng.choice(
            [np.int8, np.uint8, np.int32, np.uint16]))
    elif choice == 2:
        write_h5(path, images=(x / 255.0).astype(np.float32))
    else:
        write_h5(path, attrs={"num_classes": 10})
    return "valid variant %d" % choice, {0}

def h5_bad_label(path):
    _, y = arrays("train")
    y = y.copy()
    y[rng.randrange(len(y))] = rng.choice([10, 11, 255, 1000, -1, -(2**31)])
    write_h5(path, labels=y)
    return "a label out of range", {3}

def h5_label_count(path):
    _, y = arrays("train")
    keep = other_than(len(y), [0, 1, len(y) - 1, len(y) // 2])
    extra = np.zeros(rng.randrange(1, 50), np.int64)
    write_h5(path, labels=y[:keep] if rng.random() < 0.5 else np.concatenate([y, extra]))
    return "labels and images counts differ", {3}

def h5_shape(path):
    x, _ = arrays("train")
    n = len(x)
    shape = rng.choice([(n, 784), (n, 1, 1, 28, 28), (n, 1, 14, 56), (n, 2, 28, 14),
                        (n, 784, 1, 1), (0, 1, 28, 28)])
    images = x.reshape(shape) if shape[0] else np.zeros(shape, np.uint8)
    write_h5(path, images=images, labels=None if shape[0] else np.zeros(0, np.int64))
    return f"images of shape {shape}", {3}

def h5_type(path):
    x, _ = arrays("train")
    dtype = rng.choice([np.int16, np.float64, np.int8, np.uint32])
    write_h5(path, images=x.astype(dtype))
    return f"images of type {np.dtype(dtype).name}", {3}

def h5_num_classes(path):
    value = rng.choice([0, 9, 11, 2**31 - 1, -1])
    write_h5(path, attrs={"num_classes": value})
    return f"attribute num_classes {value}", {3}

def h5_sparse(path):
    """A chunked shape claiming far more samples than were ever written."""
    x, y = arrays("train")
    chunk = rng.randrange(1, 128)
    # At least one chunk never written (a claim inside the last written
    # chunk reads back as data: HDF5 wrote that chunk whole).
    claim = rng.choice([len(x) + chunk, 16318720, 10**9, 2**40])
    with h5py.File(path, "w") as f:
        for group in ("train", "test"):
            gx, gy = arrays(group)
            n = claim if group == "train" else len(gx)
            rows = min(chunk, n)
            d = f.create_dataset(f"{group}/images", (n, 1, 28, 28), np.uint8,
                                 chunks=(rows, 1, 28, 28))
            d[:len(gx)] = gx
            l = f.create_dataset(f"{group}/labels", (n,), np.int64, chunks=(rows,))
            l[:len(gy)] = gy
    return f"chunked (chunks of {chunk}) claiming {claim} samples", {3}

def h5_patch_dims(path):
    """The count in the file's dataspace messages patched (contiguous data sets)."""
    write_h5(path)
    data = bytearray(open(path, "rb").read())
    n = len(arrays("train")[1])
    claim = other_than(n, [n + 1, 2 * n, 16318720, 2**32, 2**47, rng.randrange(2**48)])
    old = struct.pack("<Q", n)
    # The images' (n, 1, 28, 28) and, at random, every other n (the labels' (n,)).
    images_dims = old + struct.pack("<3Q", 1, 28, 28)
    spots = [k for k in range(len(data) - 32) if data[k:k + 32] == images_dims]
    if rng.random() < 0.5:
        spots += [k for k in range(len(data) - 8) if data[k:k + 8] == old and k not in spots]
    for k in spots:
        data[k:k + 8] = struct.pack("<Q", claim)
    open(path, "wb").write(bytes(data))
    return f"count {n} patched to {claim} at {len(spots)} places", {3}

def h5_cut(path):
    write_h5(path, chunk=rng.choice([None, 16]))
    size = os.path.getsize(path)
    keep = rng.randrange(size)
    os.truncate(path, keep)
    return f"cut to {keep} of {size} bytes", {3}

def h5_signature(path):
    write_h5(path)
    data = bytearray(open(path, "rb").read())
    at = rng.randrange(8)
    data[at] ^= rng.randrange(1, 256)
    open(path, "wb").write(bytes(data))
    return f"superblock signature byte {at} flipped", {3}

def h5_flip_data(path):
    """Bytes of the stored images (harmless) or labels (caught unless still in range)."""
    write_h5(path)
    with h5py.File(path, "r") as f:
        images, labels = f["train/images"], f["train/labels"]
        spans = [(images.id.get_offset(), images.id.get_storage_size(), {0}),
                 (labels.id.get_offset(), labels.id.get_storage_size(), {0, 3})]
    offset, size, expect = rng.choice(spans)
    data = bytearray(open(path, "rb").read())
    for _ in range(rng.randrange(1, 20)):
        data[offset + rng.randrange(size)] ^= rng.randrange(1, 256)
    open(path, "wb").write(bytes(data))
    return ("image" if expect == {0} else "label") + " bytes flipped", expect

H5_MUTATIONS = [h5_valid, h5_bad_label, h5_label_count, h5_shape, h5_type, h5_num_classes,
                h5_sparse, h5_patch_dims, h5_cut, h5_signature, h5_flip_data]

def h5_case(path, mutation=None):
    os.makedirs(path)
    file = f"{path}/data.h5"
    what, expect = (mutation or rng.choice(H5_MUTATIONS))(file)
    return ["data.name=hdf5", f"data.path={file}"], "hdf5 " + what, expect

# ------------------------------------------------------------------ run

def limits():
    if AS_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

def run(path, args):
    """Run the program on a case: (exit status or -signal, seconds, peak RSS in KB, log)."""
    log_path = f"{path}.log"
    with open(log_path, "w") as log:
        start = time.monotonic()
        child = subprocess.Popen([prog] + COMMON + args + [f"experiment.name={os.path.basename(path)}"],
                                 stdout=log, stderr=subprocess.STDOUT, preexec_fn=limits,
                                 start_new_session=True)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > RUN_SECONDS:
                os.killpg(child.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
    try:
        os.killpg(child.pid, signal.SIGKILL)  # whatever it started (an MPI singleton's daemon)
    except ProcessLookupError:
        pass
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return code, seconds, usage.ru_maxrss, open(log_path, errors="replace").read()

def verdict(path, what, expect, code, seconds, rss, log):
    """None if the run is fine, else what is wrong."""
    if seconds > RUN_SECONDS:
        return f"hung (killed after {RUN_SECONDS} s)"
    if code < 0:
        return f"killed by signal {-code}"
    if code not in (0, 3):
        return f"exit {code}, expected 0 or 3"
    if code not in expect:
        return f"exit {code}, expected {' or '.join(map(str, sorted(expect)))}"
    if rss > RSS_LIMIT_KB:
        return f"peak RSS {rss >> 10} MiB (limit {RSS_LIMIT_KB >> 10} MiB)"
    if code == 3:
        errors = [l for l in log.splitlines() if "odyssey-dist: data error: " in l]
        if len(errors) != 1 or path not in errors[0]:
            return "exit 3 without one data error line naming a file of the case"
    return None

cases = [("claim-raw", lambda p: idx_claim_case(p, False)),
         ("claim-gz", lambda p: idx_claim_case(p, True))]
if h5py:
    cases += [("h5-sparse", lambda p: h5_case(p, h5_sparse)),
              ("h5-dims", lambda p: h5_case(p, h5_patch_dims))]
kinds = [lambda p: idx_case(p, False), lambda p: idx_case(p, True)]
if h5py:
    kinds.append(h5_case)
for i in range(rounds):
    cases.append((f"case-{i:04d}", rng.choice(kinds)))

failures, outcomes, slowest, fattest = 0, {0: 0, 3: 0}, 0.0, 0
for name, make in cases:
    path = f"{scratch}/{name}"
    args, what, expect = make(path)
    code, seconds, rss, log = run(path, args)
    problem = verdict(path, what, expect, code, seconds, rss, log)
    slowest, fattest = max(slowest, seconds), max(fattest, rss)
    if code in outcomes:
        outcomes[code] += 1
    if problem:
        failures += 1
        print(f"FAIL: {name}: {what}: {problem} ({seconds:.1f} s, {rss >> 10} MiB)\n{log}",
              file=sys.stderr)
    elif name.startswith(("claim", "h5-")):
        print(f"--- {name}: {what}: exit {code} in {seconds:.2f} s, peak RSS {rss >> 10} MiB")
print(f"--- {len(cases)} runs: {outcomes[0]} exit 0, {outcomes[3]} exit 3, {failures} failed; "
      f"slowest {slowest:.2f} s, largest peak RSS {fattest >> 10} MiB")
if failures:
    print(f"reproduce with ODY_FUZZ_SEED={seed} ODY_FUZZ_ROUNDS={rounds}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
