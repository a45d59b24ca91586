package ifaces

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestWatchSurvivesUserSpaceMessages: a process with CAP_NET_ADMIN can
// send to the link multicast group; the watch logs such a message and
// goes on announcing interfaces. It runs in a network namespace of its
// own, so that no other watcher on the machine sees the message.
func TestWatchSurvivesUserSpaceMessages(t *testing.T) {
	testenv.RequireRoot(t)
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	ns := "pano-ifw-" + suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ip("-n", ns, "link", "add", "pw0", "type", "veth", "peer", "name", "xq0")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	events := make(chan Event, 16)
	watchErr := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, moved to the namespace, ends with
		// the goroutine.
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			watchErr <- err
			return
		}
		watchErr <- Watch(ctx, Selector{Include: []string{"pw*"}}, log, events)
	}()
	next := func(want string) {
		t.Helper()
		select {
		case e := <-events:
			if !e.Added || e.Name != want {
				t.Fatalf("event %+v, want %s added", e, want)
			}
		case err := <-watchErr:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", want)
		}
	}
	next("pw0") // the watch is subscribed

	sendErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			sendErr <- err
			return
		}
		sendErr <- sendLinkMulticast()
	}()
	if err := <-sendErr; err != nil {
		t.Fatalf("send a user-space message to the link group: %v", err)
	}
	ip("-n", ns, "link", "add", "pw1", "type", "veth", "peer", "name", "xq1")
	next("pw1")
	if !strings.Contains(logs.String(), "Wrong sender portid") {
		t.Errorf("the user-space message was not seen (the test proves nothing); log:\n%s", logs.String())
	}
	cancel()
	if err := <-watchErr; err != nil {
		t.Errorf("watch: %v", err)
	}
}

// sendLinkMulticast sends an RTM_NEWLINK message to the RTNLGRP_LINK
// group from a user-space netlink socket.
func sendLinkMulticast() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_NEWLINK)
	binary.NativeEndian.PutUint32(msg[8:], 1)                       // sequence
	binary.NativeEndian.PutUint32(msg[unix.NLMSG_HDRLEN+4:], 99999) // ifindex
	return unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.RTNLGRP_LINK - 1)})
}
