package enforcer

import (
	"github.com/ods-keyguard/ods-keyguard/internal/mysqlx"
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

func (m *MySQL) String() string { return m.server().String() }

// server is where libmysqlclient would connect for the enforcer: Host
// "localhost" is the server's unix socket.
func (m *MySQL) server() mysqlx.Server {
	return mysqlx.Server{Host: m.Host, Port: m.Port, User: m.Username, Password: m.Password, Database: m.Database}
}
