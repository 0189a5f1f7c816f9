package sandbox

import (
	"bufio"
	"context"
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

// NagiosResult is what Nagios Core made of one run of a service check, as
// its status.dat records it: the state, the first line of output, the
// further lines, and the performance data gathered from both.
type NagiosResult struct {
	State    int
	Output   string
	Long     string
	Perfdata string
}

// PluginPath is where the Debian package puts the plugin, and where the
// packaged command definitions look for it.
const PluginPath = "/usr/lib/nagios/plugins/check_ods_keyguard"

// RunNagios starts Nagios Core 4 in dir with the command definitions of
// commandsFile (the packaged ones, PluginPath pointing at plugin, run in
// env), one host and one service whose check_command is check (such as
// check_ods_keyguard_spare!2:!1:), waits until Nagios has checked the
// service once, stops it, and returns what Nagios recorded. The check runs
// the way production runs it: through Nagios's command workers, its
// arguments expanded by Nagios, its output parsed by Nagios and not by the
// test.
func RunNagios(dir, commandsFile, plugin, check string, env []string, timeout time.Duration) (*NagiosResult, error) {
	if err := os.MkdirAll(filepath.Join(dir, "checkresults"), 0o755); err != nil {
		return nil, err
	}
	// The command's environment is written into a wrapper: Nagios's
	// workers run commands through /bin/sh with Nagios's own environment.
	var wrap strings.Builder
	wrap.WriteString("#!/bin/sh\n")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&wrap, "export %s=%s\n", k, shellQuote(v))
	}
	wrap.WriteString("exec " + shellQuote(plugin) + ` "$@"` + "\n")
	if err := os.WriteFile(filepath.Join(dir, "plugin.sh"), []byte(wrap.String()), 0o755); err != nil {
		return nil, err
	}
	commands, err := os.ReadFile(commandsFile)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(commands), PluginPath) {
		return nil, fmt.Errorf("%s: no command runs %s", commandsFile, PluginPath)
	}
	commands = []byte(strings.ReplaceAll(string(commands), PluginPath, filepath.Join(dir, "plugin.sh")))
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return nil, err
	}
	main := fmt.Sprintf(`log_file=%[1]s/nagios.log
cfg_file=%[1]s/commands.cfg
cfg_file=%[1]s/objects.cfg
object_cache_file=%[1]s/objects.cache
precached_object_file=%[1]s/objects.precache
resource_file=%[1]s/resource.cfg
status_file=%[1]s/status.dat
status_update_interval=1
nagios_user=%[2]s
nagios_group=%[3]s
check_external_commands=0
lock_file=%[1]s/nagios.lock
temp_file=%[1]s/nagios.tmp
temp_path=%[1]s
check_result_path=%[1]s/checkresults
retain_state_information=0
state_retention_file=%[1]s/retention.dat
interval_length=1
max_service_check_spread=1
max_host_check_spread=1
enable_notifications=0
execute_host_checks=0
check_result_reaper_frequency=1
service_check_timeout=%[4]d
`, dir, u.Username, g.Name, int(timeout.Seconds()))
	objects := `define timeperiod {
	timeperiod_name always
	alias always
	sunday 00:00-24:00
	monday 00:00-24:00
	tuesday 00:00-24:00
	wednesday 00:00-24:00
	thursday 00:00-24:00
	friday 00:00-24:00
	saturday 00:00-24:00
}
define contact {
	contact_name nobody
	host_notifications_enabled 0
	service_notifications_enabled 0
	host_notification_period always
	service_notification_period always
	host_notification_options n
	service_notification_options n
	host_notification_commands none
	service_notification_commands none
}
define command {
	command_name none
	command_line /bin/true
}
define host {
	host_name keyguard
	address 127.0.0.1
	max_check_attempts 1
	check_period always
	notification_period always
	contacts nobody
}
define service {
	host_name keyguard
	service_description ods-keyguard
	check_command ` + check + `
	max_check_attempts 1
	check_interval 2
	retry_interval 2
	check_period always
	notification_period always
	contacts nobody
}
`
	files := map[string]string{
		"nagios.cfg":   main,
		"commands.cfg": string(commands),
		"objects.cfg":  objects,
		"resource.cfg": "$USER1$=" + dir + "\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	// Nagios's own check of the configuration first, as an operator runs it.
	vctx, vcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer vcancel()
	if out, err := exec.CommandContext(vctx, "nagios4", "-v", filepath.Join(dir, "nagios.cfg")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nagios4 -v: %v: %s", err, tail(string(out)))
	}
	log, err := os.Create(filepath.Join(dir, "run.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nagios4", filepath.Join(dir, "nagios.cfg"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	deadline := time.Now().Add(timeout + 20*time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			out, _ := os.ReadFile(filepath.Join(dir, "run.log"))
			return nil, fmt.Errorf("nagios4 exited: %v: %s", err, tail(string(out)))
		case <-time.After(200 * time.Millisecond):
		}
		r, err := readNagiosStatus(filepath.Join(dir, "status.dat"))
		if err == nil && r != nil {
			stop()
			return r, nil
		}
	}
	stop()
	out, _ := os.ReadFile(filepath.Join(dir, "nagios.log"))
	return nil, fmt.Errorf("nagios4 did not check the service in %s: %s", timeout+20*time.Second, tail(string(out)))
}

// readNagiosStatus returns the service's status once it has been checked,
// and nil before.
func readNagiosStatus(path string) (*NagiosResult, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var in bool
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "servicestatus {":
			in = true
		case in && line == "}":
			in = false
		case in:
			k, v, _ := strings.Cut(line, "=")
			kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if kv["has_been_checked"] != "1" {
		return nil, nil
	}
	state, err := strconv.Atoi(kv["current_state"])
	if err != nil {
		return nil, fmt.Errorf("status.dat: current_state %q", kv["current_state"])
	}
	unescape := strings.NewReplacer(`\n`, "\n", `\\`, `\`)
	return &NagiosResult{
		State:    state,
		Output:   kv["plugin_output"],
		Long:     unescape.Replace(kv["long_plugin_output"]),
		Perfdata: kv["performance_data"],
	}, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
