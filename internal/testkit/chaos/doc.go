// Package chaos holds the fleet's Jepsen-style test (chaos_test.go): three worker
// processes on a 3-node JetStream cluster take thousands of commands while a nemesis
// kills, stops, freezes and cuts off workers, steps down leaders and restarts nodes;
// a checker then reads every result and every APIOps request and counts lost
// commands, duplicates, order violations, overlaps and wrong final states.
//
// `make test` runs a short version; `make chaos` the full one, printing its figures.
package chaos
