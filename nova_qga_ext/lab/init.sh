#!/bin/sh
# /init of the nova-qga-ext lab guest (busybox, real qemu-ga, real chpasswd).
#
# Kernel command line switches:
#   qga.block=cmd1,cmd2   start qemu-ga with --block-rpcs=cmd1,cmd2
#
# Fault injection hooks used by the host (nova_qga_ext/lab/guest.py):
#   /run/qga.pause        holds N: the restart loop sleeps N s before the
#                         next qemu-ga start, so killing qemu-ga keeps the
#                         agent channel disconnected for N s.
#   virtio port org.nova_qga_ext.lab.control
#                         shell lines from the host, run as root, each
#                         answered with "done <status>"; reaches the guest
#                         while qemu-ga is stopped or hung.

# qemu-ga finds chpasswd through PATH, and the kernel starts init without one.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
hostname qgalab

# Debian builds virtio and ext4 as modules and there is no modprobe here;
# modules.order lists them in dependency order. crc32c-intel fails under TCG
# (no SSE4.2), crc32c_generic covers for it.
while read -r mod; do
    insmod "/lib/modules/$mod" 2>/dev/null
done < /lib/modules/modules.order

# No udev: create the /dev/virtio-ports/<name> links qemu-ga opens.
i=0
while [ -z "$(ls /sys/class/virtio-ports 2>/dev/null)" ] && [ $i -lt 40 ]; do
    sleep 0.05; i=$((i + 1))
done
mkdir -p /dev/virtio-ports
for port in /sys/class/virtio-ports/*; do
    [ -r "$port/name" ] || continue
    ln -sf "../${port##*/}" "/dev/virtio-ports/$(cat "$port/name")"
done

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
    sleep 0.05; i=$((i + 1))
done
if [ -b /dev/vda ]; then
    mount -t ext4 /dev/vda /data || echo "lab: cannot mount /dev/vda"
fi

block=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        qga.block=*) block="--block-rpcs=${arg#qga.block=}" ;;
    esac
done

control=/dev/virtio-ports/org.nova_qga_ext.lab.control
if [ -e "$control" ]; then
    (
        # The port stays open: QEMU passes host data only to an open port,
        # and does not look again when the guest reopens it later.
        exec 3<>"$control"
        while :; do
            # read fails at once while no host is connected.
            if read -r line <&3; then
                sh -c "$line" </dev/null >/dev/null 2>&1
                echo "done $?" >&3
            else
                sleep 0.2
            fi
        done
    ) 2>/dev/null &
fi

echo "lab: ready"

agent=/dev/virtio-ports/org.qemu.guest_agent.0
while :; do
    if [ -e "$agent" ]; then
        qemu-ga -m virtio-serial -p "$agent" -t /run $block
    else
        sleep 5
    fi
    if [ -f /run/qga.pause ]; then
        pause=$(cat /run/qga.pause)
        rm -f /run/qga.pause
        sleep "$pause"
    fi
    sleep 0.5
done
