#!/usr/bin/env python3
"""Writes summary.md for a results directory of bench/run (standard library only).

    python3 bench/summarize.py bench/results/<timestamp>

Reads machine.txt, params.env and, per scenario directory, status.json and the generator's
JSON (load.json, idle.json, reads.json). Ratios are always "this target / the Node reference":
above 1 is better for a rate, below 1 is better for a latency or for memory.
"""

import json
import os
import sys

RAMPS = [
    ("embedded", "embedded `chat` (SQLite, in-process bus), one process"),
    ("scaled1", "`chat-api` + 1 `chat-gateway` on PostgreSQL + Redis"),
    ("scaled2", "`chat-api` + 2 `chat-gateway` on PostgreSQL + Redis"),
    ("peer", "Node.js reference, 2 replicas (REST and Socket.IO on each) on PostgreSQL + Redis"),
]
IDLE = [
    ("idle-embedded", "embedded `chat`"),
    ("idle-gateway", "one `chat-gateway` (scaled)"),
    ("idle-peer", "one Node.js reference replica"),
]
STORAGE = [("storage-postgres", "PostgreSQL (`chat-api`)"), ("storage-sqlite", "SQLite (`chat`)")]
OTHER_SCENARIOS = {"embedded", "scaled1", "scaled2", "peer"}


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 10:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def codes(c):
    return ", ".join(f"{k}={v}" for k, v in sorted((c or {}).items())) or "–"


class Run:
    def __init__(self, root):
        self.root = root
        self.status = {}
        for name in os.listdir(root):
            st = load_json(os.path.join(root, name, "status.json"))
            if st:
                self.status[name] = st

    def json(self, scenario, name):
        return load_json(os.path.join(self.root, scenario, name))

    def text(self, name):
        try:
            with open(os.path.join(self.root, name)) as f:
                return f.read().rstrip()
        except OSError:
            return None


def held_text(report):
    """The highest rate that held, marked as a lower bound when the ramp never failed."""
    if not report:
        return "–"
    held = report.get("max_held_rate")
    steps = report.get("steps", [])
    top = ramp_top(report)
    if held is not None and steps and steps[-1].get("holds") and top is not None and held >= top:
        return f"≥ {fmt(held)} (the ramp's top: raise BENCH_RAMP)"
    if held is None:
        return "none (the first step failed)"
    return fmt(held)


def ramp_top(report):
    ramp = (report.get("params") or {}).get("ramp")
    try:
        return float(ramp.split(",")[2])
    except (AttributeError, IndexError, ValueError):
        return None


def step_by_rate(report):
    return {s["rate"]: s for s in (report or {}).get("steps", [])}


def ramp_section(run, name, desc, peer):
    rep = run.json(name, "load.json")
    st = run.status.get(name)
    lines = [f"### {name}: {desc}", ""]
    if st is None:
        return None
    if rep is None:
        lines.append(f"No figures: the scenario {st['status']} (exit code {st['exit_code']}); "
                     f"see `{name}/load.err` and the server logs in `{name}/`.")
        return "\n".join(lines)
    setup = rep.get("setup", {})
    conn = setup.get("connect", {})
    held = rep.get("max_held_rate")
    peer_held = peer.get("max_held_rate") if peer else None
    head = f"**Highest rate that holds: {held_text(rep)} msg/s**"
    if peer and name != "peer":
        head += f" (Node reference: {held_text(peer)} msg/s; ratio {ratio(held, peer_held)})"
    lines += [
        head,
        "",
        f"{setup.get('users')} users ({conn.get('connected')}/{conn.get('attempted')} sockets connected "
        f"in {fmt(conn.get('wall_secs'), 1)} s, per gateway {conn.get('per_gateway')}), "
        f"{setup.get('conversations')} conversations; scenario took {st['seconds']} s"
        + ("" if st["status"] == "ok" else f", **{st['status']} (exit code {st['exit_code']})**") + ".",
        "",
    ]
    peer_steps = step_by_rate(peer) if peer and name != "peer" else {}
    header = ["step", "rate/s", "achieved", "sent", "acked", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
              "lost", "dups", "errors", "ack p99 ms (socket/REST)", "gen CPU %", "pacing lag p99 ms",
              "server CPU %", "machine busy %", "holds"]
    if peer_steps:
        header += ["p99 ÷ peer p99"]
    rows = []
    for s in rep.get("steps", []):
        d = s.get("deliveries", {})
        lat = s.get("latency_others", {})
        servers = "/".join(fmt(x.get("cpu_percent"), 0) for x in s.get("servers", [])) or "–"
        holds = "yes" if s.get("holds") else "NO: " + "; ".join(s.get("reasons", []))
        row = [s["step"], fmt(s["rate"], 0), fmt(s.get("achieved_rate"), 0),
               s.get("sent_socket", 0) + s.get("sent_rest", 0), s.get("acked"),
               fmt(lat.get("p50_ms")), fmt(lat.get("p99_ms")), fmt(lat.get("p999_ms")),
               fmt(lat.get("max_ms")), d.get("lost_others", 0) + d.get("lost_own", 0),
               d.get("duplicates_others", 0) + d.get("duplicates_own", 0),
               (f"{s.get('error_count')} ({codes(s.get('errors'))})" if s.get("error_count") else "0"),
               f"{fmt(s.get('ack_socket', {}).get('p99_ms'))}/{fmt(s.get('ack_rest', {}).get('p99_ms'))}",
               fmt(s.get("generator_cpu_percent"), 0), fmt(s.get("pacing_lag", {}).get("p99_ms")),
               servers, fmt(s.get("machine_cpu_busy_percent"), 0), holds]
        if peer_steps:
            ps = peer_steps.get(s["rate"])
            row.append(ratio(lat.get("p99_ms"), ps["latency_others"]["p99_ms"]) if ps else "–")
        rows.append(row)
    lines.append(table(header, rows))
    extra = []
    if rep.get("late_deliveries"):
        extra.append(f"late deliveries {rep['late_deliveries']}")
    if rep.get("disconnects"):
        extra.append(f"disconnects {codes(rep['disconnects'])}")
    if rep.get("failures"):
        extra.append("problems: " + "; ".join(rep["failures"]))
    if extra:
        lines += ["", "Also: " + "; ".join(extra) + "."]
    lines += ["", "Server CPU is % of one core per process (in `--pid` order: "
              + ("chat" if name == "embedded" else "peer1/peer2" if name == "peer"
                 else "api/gateways") + ")."]
    return "\n".join(lines)


def idle_section(run):
    rows = []
    reps = {n: run.json(n, "idle.json") for n, _ in IDLE}
    peer = reps.get("idle-peer")

    def per_socket(rep, key):
        if not rep or not rep.get("memory"):
            return None
        return rep["memory"][0].get(key)

    for name, desc in IDLE:
        st = run.status.get(name)
        if st is None:
            continue
        rep = reps[name]
        if rep is None:
            rows.append([desc, "–", "–", "–", "–", "–", f"{st['status']} (exit {st['exit_code']})"])
            continue
        c = rep.get("connect", {})
        m = rep["memory"][0] if rep.get("memory") else {}
        conn_kib = m.get("per_socket_kib")
        hold_kib = m.get("per_socket_after_hold_kib")
        rows.append([
            desc, f"{c.get('connected')}/{c.get('attempted')}",
            f"{fmt(m.get('before_kib'))} → {fmt(m.get('connected_kib'))} → {fmt(m.get('after_hold_kib'))}",
            fmt(conn_kib), fmt(hold_kib),
            "–" if name == "idle-peer" or not peer else ratio(hold_kib, per_socket(peer, "per_socket_after_hold_kib")),
            f"alive after {fmt(rep.get('hold_secs'), 0)} s hold: {rep.get('alive_after_hold')}; "
            f"disconnects {codes(rep.get('disconnects'))}"
            + ("" if not rep.get("failures") else "; " + "; ".join(rep["failures"])),
        ])
    if not rows:
        return None
    return "\n".join([
        "## Idle sockets: memory per socket", "",
        table(["target", "sockets", "RSS KiB before → connected → after hold", "KiB/socket connected",
               "KiB/socket after hold", "after hold ÷ peer", "notes"], rows), "",
        "Each target is a fresh process; growth of its VmRSS divided by its sockets."])


def storage_section(run):
    reps = {n: run.json(n, "reads.json") for n, _ in STORAGE}
    present = [(n, d) for n, d in STORAGE if n in run.status]
    if not present:
        return None
    lines = ["## Storage at scale: REST reads (sequential, one connection)", ""]
    for n, d in present:
        st = run.status[n]
        rep = reps.get(n)
        if rep is None:
            lines.append(f"- {d}: no figures, the scenario {st['status']} (exit code {st['exit_code']}); "
                         f"see `{n}/`.")
        else:
            users = ", ".join(f"{u['user']} in {fmt(u.get('total_conversations'))} conversations"
                              for u in rep.get("users", []))
            lines.append(f"- {d}: {users}; {rep['params'].get('requests')} timed requests per kind after "
                         f"{rep['params'].get('warmup')} warm-up, at most {rep['params'].get('kind_budget_secs')} s "
                         f"per kind; took {st['seconds']} s"
                         + ("" if st["status"] == "ok" else f", **{st['status']}**")
                         + ("" if not rep.get("failures") else "; problems: " + "; ".join(rep["failures"])))
    lines.append("")
    # One row per (user, kind), the backends side by side.
    keyed = {}
    order = []
    for n, _ in present:
        for u in (reps.get(n) or {}).get("users", []):
            for k in u.get("kinds", []):
                key = (u["user"], k["kind"])
                if key not in keyed:
                    keyed[key] = {}
                    order.append(key)
                keyed[key][n] = (u, k)
    header = ["user", "kind"]
    for n, d in present:
        short = n.split("-", 1)[1]
        header += [f"{short} convs", f"{short} p50 ms", f"{short} p99 ms", f"{short} n", f"{short} items"]
    header.append("notes")
    rows = []
    for key in order:
        row = [key[0], key[1]]
        notes = []
        for n, _ in present:
            uk = keyed[key].get(n)
            if uk is None:
                row += ["–"] * 5
                continue
            u, k = uk
            items = "–" if k.get("items") is None else f"{k['items']}{'+' if k.get('more') else ''}"
            if k["status"] == "ok" and k.get("requests"):
                row += [fmt(u.get("total_conversations")), fmt(k["latency"]["p50_ms"]),
                        fmt(k["latency"]["p99_ms"]), k["requests"], items]
            else:
                row += [fmt(u.get("total_conversations")), "–", "–", 0, items]
            if k.get("note"):
                notes.append(f"{n.split('-', 1)[1]}: {k['status']}: {k['note']}")
        row.append("; ".join(notes) or "")
        rows.append(row)
    lines.append(table(header, rows))
    lines += ["", "`items` is the size of the first page answered (`+`: a `nextCursor` followed); "
              "`inbox_deep` is the page 5 cursors in; `messages` the newest conversation's last 50."]
    return "\n".join(lines)


def bus_section(run):
    if "bus" not in run.status:
        return None
    rows = []
    for mode in ("disjoint", "mixed"):
        rep = run.json("bus", f"load-{mode}.json")
        if rep is None:
            rows.append([mode, "–", "–", "–", "–", "–", "–"])
            continue
        steps = rep.get("steps") or [{}]
        sent = sum((s.get("sent_socket") or 0) + (s.get("sent_rest") or 0) for s in steps)
        published = sum(b["published"] for b in rep.get("bus", []))
        for b in rep.get("bus", []):
            secs = b.get("seconds") or 1
            share = f"{100 * b['received'] / published:.0f} %" if published else "–"
            rows.append([mode, b["url"].rsplit("/", 1)[0], sent, b["channels"],
                         f"{b['received']} ({b['received'] / secs:.0f}/s)", share,
                         f"{b['received_bytes'] / secs / 1024:.1f}",
                         f"{b['published']} ({b['published'] / secs:.0f}/s)"])
    return "\n".join([
        "## Redis traffic per replica (scenario bus)", "",
        table(["placement", "process (api first, then gateways)", "messages sent", "channels at the end",
               "events received", "÷ all published", "KiB/s received", "events published"], rows), "",
        "The same steady load twice: every conversation's users on one gateway (disjoint), then "
        "spread over both (mixed). A gateway receives the events of its own sockets' users and "
        "rooms only: its share of all events published, where a broadcast adapter would bring "
        "every gateway all of them (100 %)."])


def headline(run, ramps):
    peer = ramps.get("peer")
    peer_held = peer.get("max_held_rate") if peer else None
    rows = []
    for name, desc in RAMPS:
        if name not in run.status:
            continue
        rep = ramps.get(name)
        if rep is None:
            rows.append([name, desc, "–", "–", "–", "–", run.status[name]["status"]])
            continue
        held = rep.get("max_held_rate")
        at = step_by_rate(rep).get(held) if held is not None else None
        lat = (at or {}).get("latency_others", {})
        rows.append([name, desc, held_text(rep), "–" if name == "peer" or not peer else ratio(held, peer_held),
                     fmt(lat.get("p50_ms")), fmt(lat.get("p99_ms")),
                     run.status[name]["status"] + ("" if not rep.get("failures") else " (with problems)")])
    if not rows:
        return None
    return "\n".join([
        "## Headline: highest message rate that holds", "",
        table(["scenario", "target", "msg/s", "÷ peer", "p50 ms there", "p99 ms there", "status"], rows), "",
        "A step holds when the delivery p99 to the other participants is within the limit, with no "
        "loss, no duplicate, no error, and the generator kept its pacing."])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py RESULTS-DIR")
    root = sys.argv[1]
    run = Run(root)
    ramps = {n: run.json(n, "load.json") for n, _ in RAMPS}
    peer = ramps.get("peer")
    out = [f"# Benchmark results {os.path.basename(os.path.abspath(root))}", ""]
    params = run.text("params.env") or ""
    if "QUICK=1" in params:
        out += ["**QUICK=1: smoke-run parameters; these figures say nothing about capacity.**", ""]
    out += ["## Machine", "", "```", run.text("machine.txt") or "(machine.txt missing)", "```", "",
            "Parameters (`params.env`); the exact commands are in `commands.txt`.", "",
            "```", params or "(params.env missing)", "```", ""]
    rows = [[n, st["status"], st["exit_code"], st["seconds"]] for n, st in sorted(
        run.status.items(), key=lambda kv: [s for s, _ in RAMPS + IDLE + STORAGE].index(kv[0])
        if kv[0] in [s for s, _ in RAMPS + IDLE + STORAGE] else 99)]  # others (bus) last
    if rows:
        out += ["## Scenarios", "", table(["scenario", "status", "exit code", "seconds"], rows), ""]
    h = headline(run, ramps)
    if h:
        out += [h, ""]
    sections = [ramp_section(run, n, d, peer) for n, d in RAMPS]
    sections = [s for s in sections if s]
    if sections:
        out += ["## Ramps", "", "Delivery latency is to the participants other than the sender; "
                "ratios are this target ÷ the Node reference at the same rate (below 1: lower latency).", ""]
        for s in sections:
            out += [s, ""]
    for s in (idle_section(run), storage_section(run), bus_section(run)):
        if s:
            out += [s, ""]
    path = os.path.join(root, "summary.md")
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(path)


if __name__ == "__main__":
    main()
