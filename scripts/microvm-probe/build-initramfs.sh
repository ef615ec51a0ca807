#!/bin/sh
# Builds /tmp/microvm-probe/initramfs.cpio.gz : busybox init + virtio modules + httpd on :8080
# Optional: SERVER_BIN=/path/to/dynamic/binary -> also copied with its libs; init runs it if cmdline has app=1
set -e
P=/tmp/microvm-probe
KVER=6.1.0-57-cloud-amd64
K=$P/kpkg/lib/modules/$KVER/kernel
R=$P/rootfs
rm -rf $R; mkdir -p $R/bin $R/sbin $R/proc $R/sys $R/dev $R/tmp $R/www $R/modules $R/etc
cp /bin/busybox $R/bin/busybox
for a in sh mount insmod ip ifconfig httpd nc cat echo sleep mkdir ls dmesg poweroff grep; do ln -sf busybox $R/bin/$a; done
for m in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_mmio.ko \
         drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko \
         net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
  cp $K/$m $R/modules/
done
echo OK > $R/www/health
if [ -n "$SERVER_BIN" ] && [ -x "$SERVER_BIN" ]; then
  cp "$SERVER_BIN" $R/bin/app
  for lib in $(ldd "$SERVER_BIN" | grep -o '/[^ ]*'); do
    mkdir -p $R$(dirname $lib); cp -L $lib $R$lib
  done
fi
cat > $R/init <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  insmod /modules/$m.ko 2>/dev/null
done
ip link set lo up
ip addr add 172.31.250.2/30 dev eth0 || echo "INIT: no eth0" 
ip link set eth0 up
echo "INIT: net up $(cat /proc/uptime)"
if grep -q 'app=1' /proc/cmdline && [ -x /bin/app ]; then
  echo "INIT: exec app"
  HOST=0.0.0.0 PORT=8080 RUST_LOG=info exec /bin/app
fi
echo "INIT: exec httpd"
exec httpd -f -p 8080 -h /www
INIT
chmod +x $R/init
cd $R && find . | cpio -o -H newc --quiet | gzip -6 > ${OUT:-$P/initramfs.cpio.gz}
ls -la ${OUT:-$P/initramfs.cpio.gz}
