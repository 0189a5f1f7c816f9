package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GaleraProvider is Debian's galera-4 library.
const GaleraProvider = "/usr/lib/galera/libgalera_smm.so"

// Galera is a MariaDB Galera cluster of sandboxed nodes on 127.0.0.1, each
// with its own data folder, ports (client, group communication, IST, SST)
// and socket. Node 1 bootstraps the cluster (--wsrep-new-cluster); the
// others join it with an rsync state transfer. Run as root, the nodes run
// as mysql: rsync's transfer refuses to run as root.
type Galera struct {
	Dir   string
	Nodes []*MariaDB
	gcomm []int
	args  [][]string
}

// StartGalera starts an n-node cluster in dir and waits until every node is
// Synced and sees n nodes.
func StartGalera(dir string, n int) (*Galera, error) {
	if _, err := os.Stat(GaleraProvider); err != nil {
		return nil, fmt.Errorf("galera: %w (Debian package galera-4)", err)
	}
	runAs, uid, gid := "", -1, -1
	if os.Getuid() == 0 {
		u, err := user.Lookup("mysql")
		if err != nil {
			return nil, fmt.Errorf("galera: the nodes run as mysql: %w", err)
		}
		runAs = "mysql"
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	} else {
		runAs = strconv.Itoa(os.Getuid())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The nodes (as mysql) reach their folders through dir.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 && uid >= 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
	g := &Galera{Dir: dir}
	ports := make([][4]int, n) // client, gcomm, ist, sst
	for i := range ports {
		for j := range ports[i] {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i][j] = p
		}
		g.gcomm = append(g.gcomm, ports[i][1])
	}
	var peers []string
	for _, p := range ports {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", p[1]))
	}
	// One data folder made once, copied to each node before any starts.
	seed := filepath.Join(dir, "seed")
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{seed, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if uid >= 0 {
		if err := os.Chown(seed, uid, gid); err != nil {
			return nil, err
		}
		if err := os.Chown(tmp, uid, gid); err != nil {
			return nil, err
		}
	}
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+seed, "--tmpdir="+tmp, "--user="+runAs,
		"--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve")
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %v: %s", err, errorLines(string(out)))
	}
	for i := 0; i < n; i++ {
		nd := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(filepath.Join(nd, "tmp"), 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.Command("cp", "-a", seed, filepath.Join(nd, "data")).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("galera: copy the data folder: %v: %s", err, out)
		}
		if uid >= 0 {
			if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), nd).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("galera: chown: %v: %s", err, out)
			}
		}
		m := &MariaDB{Dir: nd, Socket: filepath.Join(nd, "mysqld.sock"), Port: ports[i][0]}
		g.Nodes = append(g.Nodes, m)
		args := []string{"--no-defaults", "--datadir=" + filepath.Join(nd, "data"), "--tmpdir=" + filepath.Join(nd, "tmp"),
			"--user=" + runAs, "--bind-address=127.0.0.1", "--port=" + strconv.Itoa(ports[i][0]), "--socket=" + m.Socket,
			"--pid-file=" + filepath.Join(nd, "mariadbd.pid"), "--log-error=" + filepath.Join(nd, "mariadbd.log"),
			"--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--max-connections=300", "--innodb-lock-wait-timeout=5",
			"--binlog-format=ROW", "--default-storage-engine=InnoDB", "--innodb-autoinc-lock-mode=2",
			"--wsrep-on=ON", "--wsrep-provider=" + GaleraProvider,
			"--wsrep-cluster-name=keyguard-test", "--wsrep-node-name=node" + strconv.Itoa(i+1),
			"--wsrep-cluster-address=gcomm://" + strings.Join(peers, ","),
			fmt.Sprintf("--wsrep-node-address=127.0.0.1:%d", ports[i][1]),
			fmt.Sprintf("--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d;gcache.size=32M;evs.inactive_timeout=PT6S;evs.suspect_timeout=PT3S", ports[i][1], ports[i][2]),
			"--wsrep-sst-method=rsync", fmt.Sprintf("--wsrep-sst-receive-address=127.0.0.1:%d", ports[i][3]),
		}
		if i == 0 {
			args = append(args, "--wsrep-new-cluster")
		}
		g.args = append(g.args, args)
	}
	for i := range g.Nodes {
		if err := g.start(i); err != nil {
			g.Stop()
			return nil, err
		}
		// One joiner at a time: each takes its state from a Synced node.
		if err := g.waitSynced(i, i+1, 120*time.Second); err != nil {
			g.Stop()
			return nil, err
		}
	}
	return g, nil
}

// start starts node i and waits until it answers.
func (g *Galera) start(i int) error {
	m := g.Nodes[i]
	m.cmd = exec.Command("mariadbd", g.args[i]...)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("galera node %d: %w", i+1, err)
	}
	m.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(m.cmd, m.done)
	return nil
}

// waitSynced waits until node i is Synced in a cluster of size nodes.
func (g *Galera) waitSynced(i, size int, wait time.Duration) error {
	m := g.Nodes[i]
	log := filepath.Join(m.Dir, "mariadbd.log")
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		select {
		case err := <-m.done:
			out, _ := os.ReadFile(log)
			return fmt.Errorf("galera node %d exited at start (%v): %s", i+1, err, tail(string(out)))
		case <-time.After(200 * time.Millisecond):
		}
		out, err := m.Root("SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size')")
		if err != nil {
			continue
		}
		if strings.Contains(out, "Synced") && strings.Contains(out, "wsrep_cluster_size\t"+strconv.Itoa(size)+"\n") {
			return nil
		}
	}
	out, _ := os.ReadFile(log)
	return fmt.Errorf("galera node %d not Synced in a cluster of %d within %s: %s", i+1, size, wait, tail(string(out)))
}

// Kill kills node i (1-based) as a crash would, and waits for it.
func (g *Galera) Kill(node int) error {
	if node < 1 || node > len(g.Nodes) {
		return fmt.Errorf("galera: no node %d", node)
	}
	m := g.Nodes[node-1]
	if m.cmd == nil || m.cmd.Process == nil {
		return fmt.Errorf("galera: node %d is not running", node)
	}
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
	m.cmd = nil
	return nil
}

// WaitSize waits until every running node sees a cluster of size nodes:
// after a kill, the survivors have noticed.
func (g *Galera) WaitSize(size int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		ok := true
		for _, m := range g.Nodes {
			if m.cmd == nil {
				continue
			}
			out, err := m.Root("SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_ready')")
			if err != nil || !strings.Contains(out, "wsrep_cluster_size\t"+strconv.Itoa(size)+"\n") || !strings.Contains(out, "wsrep_ready\tON") {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("galera: the survivors did not agree on a cluster of " + strconv.Itoa(size) + " in time")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops every node that runs.
func (g *Galera) Stop() {
	for _, m := range g.Nodes {
		if m.cmd != nil && m.cmd.Process != nil {
			stopDaemon(m.cmd.Process.Pid, true, m.done, 20*time.Second)
			m.cmd = nil
		}
	}
}
