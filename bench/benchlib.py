"""What bench/suite and bench/peers/compare share: reading a process's CPU
time, the load average and a directory's file system, and starting,
stopping and finding the nodes of a local cluster made by tools/cluster."""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLUSTER = os.path.join(ROOT, "tools", "cluster")


def cpu_s(pid):
    """utime + stime of a process, in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def loadavg():
    """The 1, 5 and 15 minute load averages."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def fs_type(path):
    """The file system type of path as stat -f names it ("tmpfs", ...); "?"."""
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "?"
    except OSError:
        return "?"


def pick_port(width=20):
    """A random even base port whose next width ports lie below the kernel's
    ephemeral range (tools/cluster pick-port): no connect() takes them while
    a node is down."""
    out = subprocess.run([CLUSTER, "pick-port", str(width)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def cluster_start(d, node_bin, groups, nodes, base_ports, shards=0, extra=(), cluster_args=()):
    """Start a cluster in d, trying each base port in turn while tools/cluster
    says an address is in use (status 3); d is emptied before each try.
    shards 0 keeps the node's default; extra goes to every flotilla-node,
    cluster_args to tools/cluster start (say --insecure).
    Raises RuntimeError when no try succeeds."""
    r = None
    for port in base_ports:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        cmd = [CLUSTER, "start", "--dir", d, "--groups", str(groups), "--nodes", str(nodes),
               "--base-port", str(port), "--bin", node_bin]
        if shards:
            cmd += ["--shards", str(shards)]
        cmd += list(cluster_args)
        if extra:
            cmd += ["--"] + list(extra)
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            return
        if r.returncode != 3:
            break
    raise RuntimeError("tools/cluster start failed (%s): %s" %
                       (r.returncode if r else "no port", r.stderr.strip() if r else ""))


def client_env():
    """The environment for flotilla-load --cluster-dir: without FLOTILLA_TLS_*,
    so that it speaks to the cluster as tools/cluster made it (with the
    cluster's admin certificate, D/tls, when it is a TLS cluster)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_TLS_")}


def cluster_stop(d):
    subprocess.run([CLUSTER, "stop", "--dir", d], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def cluster_pids(d, nodes):
    """{node id: pid} from the pid files tools/cluster keeps in d."""
    pids = {}
    for i in range(1, nodes + 1):
        try:
            with open(os.path.join(d, f"node-{i}.pid")) as f:
                pids[i] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return pids
