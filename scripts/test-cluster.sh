#!/usr/bin/env bash
# A cluster of "hosts" on one machine, for tests of the SSH paths (see ../shared/docs/test-cluster.md).
#
#   scripts/test-cluster.sh up DIR N    N hosts h1..hN, each a network namespace on a private bridge with its own
#                                       address, hostname, /root (DIR/hosts/hK) and sshd (key-only, port 22)
#   scripts/test-cluster.sh down DIR    stops and removes everything `up DIR` created, then DIR itself;
#                                       safe to run twice and after a partial or failed `up`
#
# Needs root; installs with apt-get what is missing of openssh-server (the hosts' sshd), iproute2 (`ip`, namespaces and
# the bridge) and procps (`pgrep`, `sysctl`: the tests run them on the hosts, which share this machine's files).
# After `up`, DIR holds:
#   id_ed25519(.pub)   the client key (authorized for root on every host)
#   known_hosts        every host's address with the (shared) host key
#   inventory.txt      one `root@ADDRESS` line per host, h1 first
#   ssh_config         `ssh -F DIR/ssh_config root@ADDRESS` uses the key and checks the host key
#   sshd/hK.log        each sshd's log
#   state/             what `down` removes: the bridge, the namespaces and the sshd PIDs
#
# Each cluster takes the first free slot S (0..254): bridge tcbrS, subnet 10.200.S.0/24 (the bridge is .1, host K is
# .(10+K)), namespaces tcSh1..tcShN. So the first cluster's h1 is 10.200.0.11, and two clusters can coexist.
# The hostname inside host K is hK whatever the slot.
set -euo pipefail

SSHD=/usr/sbin/sshd
SFTP_SERVER=/usr/lib/openssh/sftp-server
READY_TIMEOUT_S=${TEST_CLUSTER_READY_TIMEOUT_S:-15}
MAX_HOSTS=200 # addresses .11 .. .210 in the /24
MARKER=.test-cluster # in DIR: this folder is a cluster's, so `down` may remove it

die() {
    echo "test-cluster: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 up DIR N | down DIR" >&2
    exit 2
}

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, a bridge, sshd on port 22); run it as root"
}

# `down` needs only `ip`; it must not wait for apt-get, so it only checks.
need_ip() {
    command -v ip >/dev/null || die "needs iproute2 (the 'ip' command), which '$0 up' installs"
}

# Installs, in one apt-get run, the packages of which a needed file is missing; then checks the files are there.
install_missing() {
    local missing=()
    { [ -x "$SSHD" ] && [ -x "$SFTP_SERVER" ] && command -v ssh-keygen >/dev/null; } || missing+=(openssh-server)
    command -v ip >/dev/null || missing+=(iproute2)
    { command -v pgrep >/dev/null && command -v sysctl >/dev/null; } || missing+=(procps)
    command -v unshare >/dev/null || missing+=(util-linux)
    [ ${#missing[@]} -eq 0 ] && return
    echo "test-cluster: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq >&2 || die "apt-get update failed, so ${missing[*]} cannot be installed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
    [ -x "$SSHD" ] && [ -x "$SFTP_SERVER" ] || die "openssh-server installed but $SSHD or $SFTP_SERVER is still missing"
    command -v ip >/dev/null && command -v pgrep >/dev/null && command -v sysctl >/dev/null &&
        command -v unshare >/dev/null || die "installed ${missing[*]}, but ip, pgrep, sysctl or unshare is still missing"
}

# Records one line in DIR/state/FILE before the thing it names is created, so `down` also finds half-made things.
record() {
    echo "$2" >>"$DIR/state/$1"
}

# Claims the first slot whose bridge does not exist and whose subnet nobody uses; creating the bridge is the claim
# (atomic: `ip link add` fails when another cluster took the name first).
claim_slot() {
    local slot
    for slot in $(seq 0 254); do
        ip link show "tcbr$slot" >/dev/null 2>&1 && continue
        [ -z "$(ip -4 addr show to "10.200.$slot.0/24")" ] || continue
        if ip link add "tcbr$slot" type bridge 2>/dev/null; then
            SLOT=$slot
            echo "$slot" >"$DIR/state/slot"
            record bridge "tcbr$slot"
            return
        fi
    done
    die "no free slot: bridges tcbr0..tcbr254 or subnets 10.200.0-254.0/24 are all taken"
}

write_sshd_config() { # host address config pidfile
    cat >"$3" <<EOF
Port 22
ListenAddress $2
HostKey $DIR/ssh_host_ed25519_key
PidFile $4
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxStartups 100:30:200
Subsystem sftp $SFTP_SERVER
EOF
}

# Waits until every sshd accepts a TCP connection (polling, with a deadline) and is still our sshd.
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_S)) k address pid
    for k in $(seq 1 "$N"); do
        address="10.200.$SLOT.$((10 + k))"
        pid=$(cat "$DIR/state/pid.h$k")
        until (exec 3<>"/dev/tcp/$address/22") 2>/dev/null; do
            alive "$pid" || die "sshd of h$k ($address) exited; its log: $(tail -n 5 "$DIR/sshd/h$k.log")"
            [ "$SECONDS" -lt "$deadline" ] || die "sshd of h$k ($address) not accepting connections after ${READY_TIMEOUT_S}s; its log: $(tail -n 5 "$DIR/sshd/h$k.log")"
            sleep 0.05
        done
    done
}

up() {
    need_root
    case "$N" in '' | *[!0-9]*) die "N must be a number of hosts, got '$N'" ;; esac
    [ "$N" -ge 1 ] && [ "$N" -le "$MAX_HOSTS" ] || die "N must be 1..$MAX_HOSTS, got $N"
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR exists and is not empty (a cluster already up there?); run '$0 down $DIR' or pick an empty folder"
    fi
    case "$DIR" in *[[:space:]]*) die "DIR must not contain whitespace (sshd_config paths), got '$DIR'" ;; esac
    install_missing

    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd) # sshd needs absolute paths
    echo "made by $0 up; remove with $0 down $DIR" >"$DIR/$MARKER"
    # From here on, any failure removes what was made.
    trap 'if [ "${UP_OK:-0}" != 1 ]; then echo "test-cluster: up failed, removing what was created" >&2; down >/dev/null 2>&1 || true; fi' EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$DIR/state" "$DIR/sshd" "$DIR/hosts"
    mkdir -p /run/sshd # privilege separation folder; nothing creates it without systemd

    ssh-keygen -q -t ed25519 -N '' -C test-cluster-client -f "$DIR/id_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C test-cluster-host -f "$DIR/ssh_host_ed25519_key"

    claim_slot
    local bridge="tcbr$SLOT" net="10.200.$SLOT"
    ip addr add "$net.1/24" dev "$bridge"
    ip link set "$bridge" up

    : >"$DIR/known_hosts"
    : >"$DIR/inventory.txt"
    local host_key k ns address home
    host_key=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
    for k in $(seq 1 "$N"); do
        ns="tc${SLOT}h$k"
        address="$net.$((10 + k))"
        record netns "$ns"
        ip netns add "$ns"
        record link "$ns"
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        ip link set "$ns" master "$bridge" up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route add default via "$net.1"

        home="$DIR/hosts/h$k"
        mkdir -p "$home/.ssh"
        chmod 700 "$home" "$home/.ssh"
        cp "$DIR/id_ed25519.pub" "$home/.ssh/authorized_keys"
        chmod 600 "$home/.ssh/authorized_keys"
        write_sshd_config "h$k" "$address" "$DIR/sshd/h$k.conf" "$DIR/sshd/h$k.pid"
        # ip netns exec, unshare and sh all exec, so $! is sshd itself (in the foreground with -D).
        ip netns exec "$ns" unshare --uts --mount --propagation private \
            sh -c 'hostname "$1" && mount --bind "$2" /root && exec "$3" -D -e -f "$4"' \
            sh "h$k" "$home" "$SSHD" "$DIR/sshd/h$k.conf" \
            </dev/null >"$DIR/sshd/h$k.log" 2>&1 &
        echo $! >"$DIR/state/pid.h$k"
        record pids "$!"

        echo "$address $host_key" >>"$DIR/known_hosts"
        echo "root@$address" >>"$DIR/inventory.txt"
    done
    cat >"$DIR/ssh_config" <<EOF
Host *
    User root
    IdentityFile $DIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $DIR/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
EOF
    wait_ready
    UP_OK=1
    echo "test-cluster: $N hosts up in $DIR: $(tr '\n' ' ' <"$DIR/inventory.txt")(bridge $bridge)" >&2
}

# Whether PID runs (a zombie, e.g. an sshd this shell started and has not reaped, counts as gone).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Kills a recorded PID only while it is still one of ours (the PID may have been reused after it exited).
kill_recorded() {
    local pid=$1 comm
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 0
    case "$comm" in sshd | ip | unshare | sh) kill -KILL "$pid" 2>/dev/null || true ;; esac
}

down() {
    [ -d "$DIR" ] || return 0
    need_root
    need_ip
    # `down` ends with rm -rf: never on a folder `up` did not make.
    if [ ! -f "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR was not made by '$0 up' (no $MARKER in it); not touching it"
    fi
    local ns pid
    # Everything still running inside a namespace (sshd, its sessions, processes tests left behind) goes with it.
    if [ -f "$DIR/state/netns" ]; then
        while read -r ns; do
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        done <"$DIR/state/netns"
    fi
    if [ -f "$DIR/state/pids" ]; then
        while read -r pid; do kill_recorded "$pid"; done <"$DIR/state/pids"
        # Wait (bounded) until they are gone, so nothing holds the namespaces or the bind mounts.
        local deadline=$((SECONDS + 5))
        while read -r pid; do
            while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.02; done
        done <"$DIR/state/pids"
    fi
    if [ -f "$DIR/state/netns" ]; then
        while read -r ns; do
            ip netns del "$ns" 2>/dev/null || true
        done <"$DIR/state/netns"
    fi
    if [ -f "$DIR/state/link" ]; then # the host ends of the veth pairs (gone with their namespaces, normally)
        while read -r ns; do ip link del "$ns" 2>/dev/null || true; done <"$DIR/state/link"
    fi
    if [ -f "$DIR/state/bridge" ]; then
        while read -r ns; do ip link del "$ns" 2>/dev/null || true; done <"$DIR/state/bridge"
    fi
    rm -rf "$DIR"
}

[ $# -ge 2 ] || usage
COMMAND=$1
DIR=$2
case "$COMMAND" in
up)
    [ $# -eq 3 ] || usage
    N=$3
    up
    ;;
down)
    [ $# -eq 2 ] || usage
    down
    echo "test-cluster: down, $DIR removed" >&2
    ;;
*) usage ;;
esac
