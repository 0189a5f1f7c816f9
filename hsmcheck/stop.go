package hsmcheck

import (
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A reader child stops between PKCS#11 calls, never inside one. SoftHSMv2
// rewrites token.object in place when a user logs in (ftruncate, then
// write): a process killed between the two leaves the token empty, and
// every key on it lost to PKCS#11. So the parent asks with SIGTERM; the
// child lets the call in progress return, starts no other, and exits. A
// call that does not return within childGrace is hung (a network HSM that
// does not answer, a module waiting on a lock): the child exits anyway,
// and the parent's SIGKILL comes in any case.

// childGrace bounds how long a child waits for the call in progress.
const childGrace = 5 * time.Second

// stopLatch serialises PKCS#11 calls with the stop: a call holds it shared,
// the stop exclusively.
type stopLatch struct {
	mu       sync.RWMutex
	stopping atomic.Bool
}

// stopOnSignal exits the process on SIGTERM or SIGINT once no call is in
// progress (or childGrace has passed).
func (g *stopLatch) stopOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		g.stopping.Store(true)
		idle := make(chan struct{})
		go func() { g.mu.Lock(); close(idle) }() // no call in progress, and none will start
		select {
		case <-idle:
		case <-time.After(childGrace):
		}
		os.Exit(143)
	}()
}

func (g *stopLatch) call(f func() error) error {
	g.mu.RLock()
	if g.stopping.Load() {
		// Told to stop: start nothing, wait for the exit.
		g.mu.RUnlock()
		select {}
	}
	defer g.mu.RUnlock()
	return f()
}

// opener wraps an Opener so that every call of its modules and sessions
// goes through g.
func (g *stopLatch) opener(open Opener) Opener {
	return func(path string) (Module, error) {
		var m Module
		err := g.call(func() (err error) { m, err = open(path); return })
		if err != nil {
			return nil, err
		}
		return stoppableModule{m, g}, nil
	}
}

type stoppableModule struct {
	m Module
	g *stopLatch
}

func (m stoppableModule) Info() (mi ModuleInfo, err error) {
	err = m.g.call(func() error { mi, err = m.m.Info(); return err })
	return
}

func (m stoppableModule) Tokens() (ts []TokenInfo, err error) {
	err = m.g.call(func() error { ts, err = m.m.Tokens(); return err })
	return
}

func (m stoppableModule) Login(slot uint, pin string) (Session, error) {
	var s Session
	err := m.g.call(func() (err error) { s, err = m.m.Login(slot, pin); return })
	if err != nil {
		return nil, err
	}
	return stoppableSession{s, m.g}, nil
}

func (m stoppableModule) Close() error { return m.g.call(m.m.Close) }

type stoppableSession struct {
	s Session
	g *stopLatch
}

func (s stoppableSession) Find(class Class, id []byte) (hs []Handle, err error) {
	err = s.g.call(func() error { hs, err = s.s.Find(class, id); return err })
	return
}

func (s stoppableSession) Attributes(h Handle, attrs []Attr) (vs [][]byte, err error) {
	err = s.g.call(func() error { vs, err = s.s.Attributes(h, attrs); return err })
	return
}

func (s stoppableSession) Close() error { return s.g.call(s.s.Close) }
