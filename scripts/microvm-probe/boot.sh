#!/bin/bash
# End-to-end: create netns+tap, boot QEMU microvm guest, probe GET /health, tear down.
# Usage: boot.sh [tcg|kvm] [app]   (app = run /bin/app from initramfs instead of busybox httpd)
# Env: TRIES (default 1), TIMEOUT (default 90 s per try), MEM (MiB, default 256), TBSIZE (TCG tb-size MiB),
#      KERNEL (default vmlinuz; vmlinux = PVH direct boot), INITRD (default initramfs.cpio.gz), KCMD, KVMCPU, HOLD=1 (pmap)
# Prereqs: apt-get install qemu-system-x86 busybox-static curl iproute2 cpio; ./build-initramfs.sh; vmlinuz extracted
#          from linux-image-6.1.0-57-cloud-amd64 (see REPORT.md). Exit 0 only if every try got HTTP 200.
set -u
P=/tmp/microvm-probe
ACCEL=${1:-tcg}
APP=${2:-}
TRIES=${TRIES:-1}
TIMEOUT=${TIMEOUT:-90}
MEM=${MEM:-256}
NS=mvprobe
KCMD=${KCMD:-"console=ttyS0 reboot=k panic=-1 quiet tsc_early_khz=2596000 lpj=5192000"}
[ "$APP" = app ] && KCMD="$KCMD app=1"
INITRD=${INITRD:-$P/initramfs.cpio.gz}
for f in "${KERNEL:-$P/vmlinuz}" "$INITRD"; do [ -r "$f" ] || { echo "missing $f"; exit 1; }; done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not installed"; exit 1; }
case $ACCEL in
  tcg) ACCELOPT="-accel tcg${TBSIZE:+,tb-size=$TBSIZE} -cpu max" ;;
  kvm) ACCELOPT="-accel kvm -cpu ${KVMCPU:-host,-arch-capabilities}" ;;
  *) echo "accel must be tcg or kvm"; exit 2 ;;
esac
QPID=""
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID"; sleep 0.5; kill -9 "$QPID" 2>/dev/null; fi
  ip netns del $NS 2>/dev/null
}
trap cleanup EXIT
ip netns del $NS 2>/dev/null
ip netns add $NS || exit 1
ip -n $NS link set lo up
ip -n $NS tuntap add dev tap0 mode tap || exit 1
ip -n $NS addr add 172.31.250.1/30 dev tap0
ip -n $NS link set tap0 up
# static neighbour entry: avoids ~1 s ARP retry quantisation of the readiness probe
ip -n $NS neigh replace 172.31.250.2 lladdr 52:54:00:fa:00:02 dev tap0 nud permanent
rc=1; ok=0
for t in $(seq 1 "$TRIES"); do
  LOG=$P/console-$ACCEL${APP:+-app}-$t.log
  t0=$(date +%s%N)
  ip netns exec $NS qemu-system-x86_64 -M microvm,pit=on,pic=on,rtc=on $ACCELOPT -m $MEM -smp 1 \
     -nodefaults -no-user-config -nographic -no-reboot -serial file:$LOG \
     -kernel ${KERNEL:-$P/vmlinuz} -initrd $INITRD -append "$KCMD" \
     -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-device,netdev=n0,mac=52:54:00:fa:00:02 &
  QPID=$!
  got=0
  while :; do
    now=$(date +%s%N); el=$(( (now - t0) / 1000000 ))
    if [ $el -gt $((TIMEOUT*1000)) ]; then break; fi
    if ! kill -0 $QPID 2>/dev/null; then echo "try $t: qemu exited early"; break; fi
    code=$(ip netns exec $NS curl -s -o /dev/null -w '%{http_code}' --max-time 0.4 http://172.31.250.2:8080/health 2>/dev/null)
    if [ "$code" = 200 ]; then got=1; break; fi
    sleep 0.1
  done
  if [ $got = 1 ]; then
    rss=$(awk '/VmRSS/{print $2}' /proc/$QPID/status)
    echo "try $t accel=$ACCEL ${APP:+app }: HTTP 200 after ${el} ms, qemu RSS ${rss} kB"
    [ -n "${HOLD:-}" ] && { echo "qemu pid $QPID"; pmap -x $QPID | sort -k3 -n -r | head -8; grep -E "Rss|Pss|Anonymous" /proc/$QPID/smaps_rollup; }
    c0=$(awk '{print $14+$15}' /proc/$QPID/stat); sleep 2; c1=$(awk '{print $14+$15}' /proc/$QPID/stat)
    rss2=$(awk '/VmRSS/{print $2}' /proc/$QPID/status); echo "   RSS 2s later: ${rss2} kB; idle CPU over 2s: $(( (c1-c0) ))/200 ticks"
    for i in 1 2 3; do ip netns exec $NS curl -s -o /dev/null -w "   warm GET /health: %{http_code} %{time_total}s\n" http://172.31.250.2:8080/health; done
    ok=$((ok+1))
  else
    echo "try $t accel=$ACCEL: FAILED (no 200 within ${TIMEOUT}s); console tail:"; tail -5 $LOG
  fi
  k0=$(date +%s%N); kill $QPID 2>/dev/null; wait $QPID 2>/dev/null; k1=$(date +%s%N); QPID=""
  echo "   destroy (SIGTERM -> qemu exited): $(( (k1-k0)/1000000 )) ms"
done
echo "$ok/$TRIES successful"
[ $ok = $TRIES ] && exit 0 || exit 1
