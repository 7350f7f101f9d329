#!/usr/bin/env python3
"""Where the host's CPU goes per event, in instructions (callgrind).

Runs parts of the throughput benchmark alone (`BENCH_ONLY`, see
host/benches/throughput.rs) under `valgrind --tool=callgrind` at two event
counts, and divides the difference of each area's instructions by the
difference of events: what one more event costs, start-up (plugin compile,
connections) and set-up (generating and publishing the events, left out by
`callgrind_control --zero`) cancelled out. Instruction counts are exact and
do not depend on what else the machine runs, unlike times.

    python3 host/benches/profile.py [host|core|baseline|merge ...] [--events 1000,3000]

`merge` (`BENCH_ONLY=merge`) compares the merge logic natively and through
the plugin engine, and splits the WebAssembly call into the guest's own
code (JIT-compiled, no symbols), wasmtime's crossing and the host imports.

The data-size figure's cost per event, the data set stored first and left
out (`core` with `BENCH_PRELOAD=1`; the environment is passed on):

    BENCH_PRELOAD=1 BENCH_CUSTOMERS=100000 BENCH_PRODUCTS=10000 \
        python3 host/benches/profile.py core --tag large --top
    BENCH_PRELOAD=1 BENCH_CUSTOMERS=100 BENCH_PRODUCTS=100 \
        python3 host/benches/profile.py core --tag small --top

Needs valgrind and, for `host` and `baseline`, the local RabbitMQ; builds
the bench (release) and plugins/merge.wasm must exist (`cargo xtask build`).
Callgrind's files are kept in target/profile/.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "profile"

# Areas: the inclusive instructions of a function (exact demangled name, as
# callgrind_annotate prints it). An area named with "- rest" is its parent
# less the areas listed under it.
AREAS = [
    ("lapin IO thread: frames in, deliveries out", "lapin::io_loop::IoLoop<RK,C>::start::{{closure}}"),
    ("tokio workers: the consumer (taking deliveries, settling, acking)", "tokio::runtime::scheduler::multi_thread::worker::run"),
    ("batch worker: process_deliveries", "switchyard::pipeline::process_deliveries"),
    ("batch core: batch::process", "switchyard::batch::process_traced"),
    ("  envelope: eventId parse, body copy (batch::admit)", "switchyard::batch::admit"),
    ("  dedupe lookup (applied_among)", "<switchyard::store::sqlite::Sqlite as switchyard::store::dedupe::Dedupe>::applied_among"),
    ("  state generation read", "<switchyard::store::sqlite::Sqlite as switchyard::store::state::PluginState>::state_generation"),
    ("  component call (Instance::handle), all of it", "switchyard::plugins::instance::Instance::handle"),
    ("    of which the state.get import (cache, SQLite on a miss)", "<switchyard::plugins::bindings::HostState as switchyard::plugins::bindings::switchyard::plugin::state::Host>::get"),
    ("    of which the state.set import", "<switchyard::plugins::bindings::HostState as switchyard::plugins::bindings::switchyard::plugin::state::Host>::set"),
    ("  commit (commit_batch: SQLite statements, WAL)", "<switchyard::store::sqlite::Sqlite as switchyard::store::batch::Batches>::commit_batch"),
    ("SQLite statements anywhere (sqlite3_step)", "sqlite3_step"),
]

# Threads of the plugin compiler (start-up only: left out of the total).
COMPILER = "rayon_core::registry::ThreadBuilder::run"
# Start-up figures, reported once (not per event).
STARTUP = [
    ("plugin compile (cranelift, incl. its threads)", COMPILER),
    ("plugin scan (read, sha256, compile on this thread, instantiate)", "switchyard::plugins::registry::PluginRegistry::scan"),
]

# Cross-cutting: self cost of these, wherever they are called from.
SELF_AREAS = [
    ("allocator (malloc, free, realloc)", ["malloc", "free", "realloc", "calloc", "_int_malloc", "_int_free", "malloc_consolidate", "_int_realloc", "cfree", "__rustc::__rust_alloc", "__rustc::__rdl_alloc", "__rustc::__rust_dealloc", "__rustc::__rdl_dealloc", "__rustc::__rust_realloc", "__rustc::__rdl_realloc"]),
    ("memcpy/memmove", ["__memcpy_avx_unaligned_erms", "__memmove_avx_unaligned_erms", "__memcpy_avx_unaligned", "__memmove_avx_unaligned"]),
]


def bench_binary():
    out = subprocess.run(
        ["cargo", "bench", "-p", "switchyard", "--bench", "throughput", "--no-run",
         "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "throughput":
            return msg["executable"]
    sys.exit("no throughput bench binary built")


def run(binary, mode, events):
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"callgrind.{TAG}{mode}.{events}"
    env = dict(os.environ, BENCH_ONLY=mode, BENCH_EVENTS=str(events), BENCH_CALLGRIND="1")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         "--dump-instr=no", "--dump-line=no", binary],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return out


TAG = ""
LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.*)$")


def costs(path, inclusive):
    """Function name -> instructions, and the program total."""
    text = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
         "--threshold=100", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    total, by_fn = 0, {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        n, rest = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in rest:
            total = n
            continue
        # "file:function [object]"; code of no object is JIT-compiled.
        jit = rest.endswith(" [???]")
        rest = re.sub(r"\s+\[[^\]]*\]$", "", rest)
        name = rest.split(":", 1)[1] if re.match(r"^[^:<]*:", rest) else rest
        name = JIT_PREFIX + name if jit else name
        by_fn[name] = by_fn.get(name, 0) + n
    return total, by_fn


# BENCH_ONLY=merge runs every event this many times each way (MERGE_ROUNDS).
MERGE_ROUNDS = 5
MERGE_AREAS = [
    ("native: the merge compiled by LLVM for x86-64 (native_round)", "throughput::native_round"),
    ("WebAssembly: the same merge through the engine (wasm_round)", "throughput::wasm_round"),
    ("  Instance::handle", "switchyard::plugins::instance::Instance::handle"),
    ("    the state.get import", "<switchyard::plugins::bindings::HostState as switchyard::plugins::bindings::switchyard::plugin::state::Host>::get"),
    ("    the state.set import", "<switchyard::plugins::bindings::HostState as switchyard::plugins::bindings::switchyard::plugin::state::Host>::set"),
]


# Names of code in no object file: cranelift's output (the guest and its
# trampolines), which callgrind knows by address only.
JIT_PREFIX = "[jit] "


def is_jit(name):
    return name.startswith(JIT_PREFIX)


def profile_merge(binary, sizes):
    small, large = sizes
    runs = {}
    for n in sizes:
        print(f"running merge with {n} events under callgrind...", file=sys.stderr)
        path = run(binary, "merge", n)
        runs[n] = (costs(path, True)[1], costs(path, False)[1])
    per = (large - small) * MERGE_ROUNDS
    (inc_s, self_s), (inc_l, self_l) = runs[small], runs[large]
    rows = [(name, (inc_l.get(fn, 0) - inc_s.get(fn, 0)) / per) for name, fn in MERGE_AREAS]

    def self_where(pred):
        return sum(self_l[f] for f in self_l if pred(f)) - sum(self_s[f] for f in self_s if pred(f))

    rows.append(("guest code (cranelift's output: the merge, its allocator, trampolines) [self]",
                 self_where(is_jit) / per))
    rows.append(("wasmtime's own functions (lifting, lowering, entering, leaving) [self]",
                 self_where(lambda f: "wasmtime" in f) / per))
    return rows


def self_cost(by_fn, names):
    return sum(by_fn.get(n, 0) for n in names)


def profile(binary, mode, sizes):
    small, large = sizes
    runs = {}
    for n in sizes:
        print(f"running {mode} with {n} events under callgrind...", file=sys.stderr)
        path = run(binary, mode, n)
        runs[n] = (costs(path, True), costs(path, False))
    per = large - small
    (tot_s, inc_s), (_, self_s) = runs[small]
    (tot_l, inc_l), (_, self_l) = runs[large]

    def d(name):
        return (inc_l.get(name, 0) - inc_s.get(name, 0)) / per

    total = (tot_l - tot_s) / per - d(COMPILER)
    rows = [("total per event (compiler threads left out)", total)]
    for name, fn in AREAS:
        if fn in inc_l:
            rows.append((name, d(fn)))
        if fn == "switchyard::batch::process_traced" and "switchyard::pipeline::process_deliveries" in inc_l:
            admitting = d("switchyard::pipeline::process_deliveries") - d(fn)
            rows.append(("  admitting: hop header, routing key, eventId parse, body copy", admitting))
    for name, names in SELF_AREAS:
        rows.append((name + " [self, anywhere]", (self_cost(self_l, names) - self_cost(self_s, names)) / per))
    startup = [(name, inc_l[fn]) for name, fn in STARTUP if fn in inc_l]
    top = sorted(((f, d(f)) for f in inc_l), key=lambda x: -x[1])[:60]
    return rows, startup, top


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("modes", nargs="*", default=["host"])
    ap.add_argument("--events", default="1000,3000")
    ap.add_argument("--binary")
    ap.add_argument("--top", action="store_true", help="also list the costliest functions")
    ap.add_argument("--tag", default="", help="names callgrind's files (before, after...)")
    args = ap.parse_args()
    global TAG
    TAG = args.tag + "." if args.tag else ""
    sizes = tuple(int(x) for x in args.events.split(","))
    binary = args.binary or bench_binary()
    for mode in args.modes:
        if mode == "merge":
            print(f"\nmerge: instructions per event ({sizes[1]} - {sizes[0]} events, "
                  f"{MERGE_ROUNDS} times each)")
            for name, n in profile_merge(binary, sizes):
                print(f"  {n:>10,.0f}  {name}")
            continue
        rows, startup, top = profile(binary, mode, sizes)
        print(f"\n{mode}: instructions per event ({sizes[1]} - {sizes[0]} events)")
        for name, n in rows:
            print(f"  {n:>10,.0f}  {name}")
        for name, n in startup:
            print(f"  once: {n:>14,}  {name}")
        if args.top:
            print("  costliest functions, inclusive:")
            for f, n in top:
                print(f"    {n:>10,.0f}  {f[:150]}")


if __name__ == "__main__":
    main()
