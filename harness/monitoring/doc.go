// Package monitoring holds the checks of the monitoring the repository
// ships for docker-compose.yml: the Prometheus configuration and alert
// rules (deploy/prometheus), the Alertmanager configuration
// (deploy/alertmanager) and the Grafana dashboards (deploy/grafana).
//
// promtool and amtool, at the releases compose runs, check the files and
// run the rules' unit tests (every alert fires and resolves); a real
// end-to-end bulk change, run with the product's binaries against the
// Temporal dev server and the simulators, is scraped, and every dashboard
// query and rule expression must name only metrics and labels that run
// exports. Only tests import it, so it stays out of the binaries.
package monitoring
