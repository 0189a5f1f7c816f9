package sandbox

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Three nodes start, see each other, and replicate; one killed, the others
// go on as a cluster of two.
func TestGalera(t *testing.T) {
	NeedTools(t, "mariadbd", "mariadb-install-db", "mariadb", "rsync", "wsrep_sst_rsync")
	if _, err := os.Stat(GaleraProvider); err != nil {
		Missing(t, "needs galera-4: %v", err)
	}
	dir, err := os.MkdirTemp("", "keyguard-galera")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	g, err := StartGalera(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if _, err := g.Nodes[0].Root("CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO g.t VALUES (1);"); err != nil {
		t.Fatal(err)
	}
	out, err := g.Nodes[2].Root("SET SESSION wsrep_sync_wait = 1; SELECT count(*) FROM g.t")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("node 3 reads %q, %v", out, err)
	}
	if err := g.Kill(2); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitSize(2, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Nodes[2].Root("INSERT INTO g.t VALUES (2)"); err != nil {
		t.Fatalf("a write on a survivor: %v", err)
	}
}
