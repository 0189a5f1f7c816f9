package enforcer

import (
	"fmt"

	"github.com/ods-keyguard/ods-keyguard/secret"
)

// Datastore says where the enforcer keeps its database: conf.xml's
// <Datastore>, SQLite or MySQL.
type Datastore struct {
	SQLite string // the kasp.db path; "" for MySQL
	MySQL  *MySQL
}

// MySQL is <Datastore><MySQL>: a MySQL or MariaDB server.
type MySQL struct {
	Host     string // a host name or address; "localhost" means the server's unix socket
	Port     int    // 0: 3306
	Database string
	Username string
	Password secret.Value
}

// String names the datastore for messages, never with the password.
func (ds Datastore) String() string {
	if ds.MySQL != nil {
		return ds.MySQL.String()
	}
	return ds.SQLite
}

func (m *MySQL) String() string {
	port := m.Port
	if port == 0 {
		port = 3306
	}
	return fmt.Sprintf("mysql://%s@%s:%d/%s", m.Username, m.Host, port, m.Database)
}
