package chaos

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiops-worker/apiops-worker/internal/testkit/natstest"
	"github.com/apiops-worker/apiops-worker/messages"
)

var (
	full  = flag.Bool("chaos.full", false, "the full run: 3,000 commands and 21 faults (make chaos)")
	seed  = flag.Uint64("chaos.seed", 0, "the random seed (0: from the clock); printed, so that a run can be repeated")
	logs  = flag.String("chaos.logs", "", "keep the workers' logs in this directory")
	kinds = flag.String("chaos.kinds", "", "only these faults, comma-separated: kill, term, stream, consumer, node, cut, freeze")
	bin   = flag.String("chaos.worker", "", "run this apiops-worker binary (default: build ../../../cmd/apiops-worker), e.g. an earlier version's")
)

// The passwords deploy/nats/accounts.conf reads from nats-server's environment.
const (
	workerPassword = "worker-pw"
	teamAPassword  = "team-a-pw"
	adminPassword  = "admin-pw"
)

// project is the project of every command: team-a's, which the publisher connects as.
const project = "TeamA"

// workerBin is the apiops-worker binary the test runs, built by TestMain.
var workerBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "apiops-chaos")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = *bin
	if workerBin == "" {
		workerBin = filepath.Join(dir, "apiops-worker")
		build := exec.Command("go", "build", "-o", workerBin, "../../../cmd/apiops-worker")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build apiops-worker:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// faultKind is one of the nemesis's actions.
type faultKind string

// shortNames are the fault kinds' names for -chaos.kinds.
var shortNames = map[string]faultKind{"kill": killWorker, "term": termWorker, "stream": streamStepdown,
	"consumer": consumerStepdown, "node": restartNode, "cut": cutWorker, "freeze": freezeWorker}

const (
	killWorker       faultKind = "SIGKILL a worker"
	termWorker       faultKind = "SIGTERM a worker"
	streamStepdown   faultKind = "step down the command stream's leader"
	consumerStepdown faultKind = "step down the consumer's leader"
	restartNode      faultKind = "stop a NATS node, start it again"
	cutWorker        faultKind = "cut a worker off from the cluster"
	freezeWorker     faultKind = "freeze a worker (SIGSTOP)"
)

var faultKinds = []faultKind{killWorker, termWorker, streamStepdown, consumerStepdown, restartNode, cutWorker, freezeWorker}

// TestChaos runs three worker processes on a 3-node cluster, publishes commands
// strictly in order while a nemesis injects faults one at a time, and checks every
// result and every APIOps request.
func TestChaos(t *testing.T) {
	commands, faults := 600, len(faultKinds)
	if *full {
		commands, faults = 3000, 3*len(faultKinds)
	}
	run := startFleet(t, resourcesFor(40))
	published := make(chan int)
	go func() { published <- run.publish(commands, 60*time.Millisecond) }()
	run.nemesis(faults)
	close(run.stopBursts)
	run.finish(<-published)
}

// startFleet starts a 3-node cluster with the shipped configuration, APIOps, and three
// worker processes at the same moment, as a Deployment does, and returns once they are
// ready and one is active. Its commands change resources.
func startFleet(t *testing.T, resources []string, workerArgs ...string) *chaosRun {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (repeat with -chaos.seed %d)", s, s)

	// The shipped cluster configuration, with its accounts: the workers in APIOPS, the
	// commands published from team-a's account through its imports.
	for k, v := range map[string]string{
		"APIOPS_WORKER_NATS_PASSWORD": workerPassword, "TEAM_A_NATS_PASSWORD": teamAPassword,
		"APIOPS_ADMIN_NATS_PASSWORD": adminPassword, "SYS_NATS_PASSWORD": "sys-pw", "SERVER_NAME": "replaced-per-node",
	} {
		t.Setenv(k, v)
	}
	cluster := natstest.StartCluster(t, 3, func(int) *server.Options {
		opts, err := server.ProcessConfigFile("../../../deploy/nats/nats-cluster.conf")
		if err != nil {
			t.Fatal(err)
		}
		// Workers reach the nodes only through their proxies: no advertised URLs.
		opts.Cluster.NoAdvertise = true
		return opts
	})
	admin, err := nats.Connect(cluster.URLs(), nats.UserInfo("apiops-admin", adminPassword), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	cluster.WaitForJetStream(admin)
	ledger := newLedger()
	api := httptest.NewServer(ledger)
	t.Cleanup(api.Close)
	nodes := []string{cluster.Addr(0), cluster.Addr(1), cluster.Addr(2)}
	dir := *logs
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	workers := make([]*workerProc, 3)
	for i := range workers {
		workers[i] = newWorkerProc(t, i, workerBin, nodes, api.URL, dir, workerArgs...)
	}
	for _, w := range workers { // at the same moment, as a Deployment starts them
		w.start()
	}
	awaitFleet(t, workers, 90*time.Second)
	return &chaosRun{t: t, rng: rand.New(rand.NewPCG(s, s)), pick: rand.New(rand.NewPCG(s+1, s+1)), cluster: cluster, admin: admin,
		workers: workers, ledger: ledger, resources: resources, bursts: make(chan burst), stopBursts: make(chan struct{})}
}

// finish ends a run whose publisher published commands: it starts whatever the last
// fault left stopped, waits for every result, stops the workers and checks.
func (r *chaosRun) finish(commands int) {
	for _, w := range r.workers {
		if _, exited := w.running(); isDone(exited) {
			w.start()
		}
	}
	r.awaitResults(commands, 3*time.Minute)
	for _, w := range r.workers {
		w.stop()
	}
	r.check(commands)
}

// awaitFleet waits until every worker answers ready and one of them is active.
func awaitFleet(t *testing.T, workers []*workerProc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		roles := make([]string, len(workers))
		active := 0
		for i, w := range workers {
			roles[i] = w.role()
			if roles[i] == "active" {
				active++
			}
		}
		if active == 1 && !slices.Contains(roles, "") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet did not come up within %v: roles %q", timeout, roles)
		}
		time.Sleep(100 * time.Millisecond) // polling: the processes announce nothing
	}
}

// chaosRun is what the publisher, the nemesis and the checker share.
type chaosRun struct {
	t         *testing.T
	rng       *rand.Rand // the nemesis's
	pick      *rand.Rand // the publisher's: which resource each command changes
	cluster   *natstest.Cluster
	admin     *nats.Conn
	workers   []*workerProc
	ledger    *ledger
	resources []string

	// bursts asks the publisher for that many commands at once, and is answered when
	// they are published: the nemesis strikes a worker while it holds many.
	bursts     chan burst
	stopBursts chan struct{} // closed when the nemesis is done

	mu          sync.Mutex
	lastOf      map[string]int // resource → index of its last published command
	publishedAt []time.Time
	retries     int
	done        []fault
}

type burst struct {
	n    int
	done chan struct{}
}

// fault is one nemesis action, as it happened.
type fault struct {
	kind     faultKind
	target   string
	hit      string // the instance a worker fault hit
	at       time.Time
	takeover time.Duration // until another worker was active, when the active one was hit
	resumed  time.Duration // until APIOps saw the next request
}

func resourcesFor(n int) []string {
	var out []string
	for i := range n {
		if i%3 == 2 {
			out = append(out, fmt.Sprintf("proxy/ChaosAPI%d", i))
		} else {
			out = append(out, fmt.Sprintf("credential/chaos-user-%d", i))
		}
	}
	return out
}

// publish sends commands strictly one after another, one every pace and in bursts
// the nemesis asks for, each retried with the same Nats-Msg-Id until JetStream
// acknowledges it: at least n, and on until the nemesis is done, so that every fault
// meets a fleet at work. It returns how many it published.
func (r *chaosRun) publish(n int, pace time.Duration) int {
	nc, err := nats.Connect(r.cluster.URLs(), nats.UserInfo("team-a", teamAPassword), nats.CustomInboxPrefix("_INBOX.TeamA"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		r.t.Error(err)
		return 0
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	r.mu.Lock()
	r.lastOf = make(map[string]int)
	r.mu.Unlock()
	var pending *burst // a burst being published
	left := 0
	for i := 0; ; i++ {
		if i >= n && pending == nil && isDone(r.stopBursts) {
			return i
		}
		if pending == nil {
			select {
			case b := <-r.bursts:
				pending, left = &b, b.n
			default:
			}
		}
		resource := r.resources[r.pick.IntN(len(r.resources))]
		msg := commandMsg(i, resource)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := js.PublishMsg(ctx, msg)
			cancel()
			if err == nil {
				break
			}
			r.mu.Lock()
			r.retries++
			r.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		r.mu.Lock()
		r.lastOf[resource] = i
		r.publishedAt = append(r.publishedAt, time.Now())
		r.mu.Unlock()
		if pending != nil {
			if left--; left > 0 {
				continue // a burst goes out back to back
			}
			close(pending.done)
			pending = nil
		}
		time.Sleep(pace)
	}
}

// burstNow has the publisher send n commands at once and waits until they are out.
func (r *chaosRun) burstNow(n int) {
	b := burst{n: n, done: make(chan struct{})}
	r.bursts <- b
	<-b.done
}

func commandMsg(i int, resource string) *nats.Msg {
	id := fmt.Sprintf("c-%d", i)
	kind, name, _ := strings.Cut(resource, "/")
	msg := nats.NewMsg("")
	msg.Header.Set(messages.HeaderMsgID, messages.MsgID(project, id))
	if kind == "proxy" {
		msg.Subject = "apiops.cmd." + project + ".proxy.mtls.update"
		msg.Data = fmt.Appendf(nil, `{"id":%q,"params":{"apiProxyName":%q,"enabled":true,"keyStoreId":"ks-%d"}}`, id, name, i)
	} else {
		msg.Subject = "apiops.cmd." + project + ".credential.truststore.set"
		msg.Data = fmt.Appendf(nil, `{"id":%q,"params":{"username":%q,"keystoreName":"ks-%d"}}`, id, name, i)
	}
	return msg
}

// nemesis injects n faults, one at a time, every kind at least once, a few seconds
// apart. Worker faults hit the active worker, where failover is at stake.
func (r *chaosRun) nemesis(n int) {
	pool := faultKinds
	if *kinds != "" {
		pool = nil
		for name := range strings.SplitSeq(*kinds, ",") {
			kind, ok := shortNames[strings.TrimSpace(name)]
			if !ok {
				r.t.Fatalf("-chaos.kinds: no fault %q", name)
			}
			pool = append(pool, kind)
		}
	}
	kinds := make([]faultKind, 0, n)
	for len(kinds) < n {
		kinds = append(kinds, pool...)
	}
	kinds = kinds[:n]
	r.rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	time.Sleep(2 * time.Second) // let commands flow first
	for i, kind := range kinds {
		switch kind {
		case killWorker, termWorker, cutWorker, freezeWorker:
			r.awaitServing(30 * time.Second) // hit a fleet that has recovered, for figures that mean one fault
			r.burstNow(40)                   // the active worker holds many commands when it is hit
		}
		f := fault{kind: kind, at: time.Now()}
		target := r.active()
		targetInstance, hit := target.instance(), ""
		switch kind {
		case killWorker:
			f.target = fmt.Sprintf("worker %d", target.n)
			target.kill()
			r.watchTakeover(&f, targetInstance, func() { time.Sleep(time.Second); target.start() })
		case termWorker:
			f.target = fmt.Sprintf("worker %d", target.n)
			target.signal(syscall.SIGTERM)
			r.watchTakeover(&f, targetInstance, func() {
				_, exited := target.running()
				<-exited
				target.start()
			})
		case cutWorker:
			f.target = fmt.Sprintf("worker %d", target.n)
			if i%2 == 1 {
				f.target += " (silent)"
			}
			for _, p := range target.proxies {
				if i%2 == 0 {
					p.Cut() // connections closed: the worker notices at once
				} else {
					p.Stall() // nothing moves: the worker notices by missed pings
				}
			}
			r.watchTakeover(&f, targetInstance, func() {
				time.Sleep(6 * time.Second)
				for _, p := range target.proxies {
					p.Heal()
				}
			})
		case freezeWorker:
			f.target = fmt.Sprintf("worker %d", target.n)
			target.signal(syscall.SIGSTOP)
			r.watchTakeover(&f, targetInstance, func() {
				time.Sleep(time.Duration(6+r.rng.IntN(4)) * time.Second)
				target.signal(syscall.SIGCONT)
			})
		case streamStepdown:
			f.target = "APIOPS_COMMANDS"
			r.stepdown("$JS.API.STREAM.LEADER.STEPDOWN.APIOPS_COMMANDS")
		case consumerStepdown:
			// Every consumer of the command stream: the workers make one per project.
			names := r.commandConsumers()
			f.target = strings.Join(names, ",")
			for _, name := range names {
				r.stepdown("$JS.API.CONSUMER.LEADER.STEPDOWN.APIOPS_COMMANDS." + name)
			}
		case restartNode:
			node := r.rng.IntN(3)
			f.target = fmt.Sprintf("node %d", node)
			r.cluster.Stop(node)
			time.Sleep(3 * time.Second)
			r.cluster.Start(node)
		}
		if strings.HasPrefix(f.target, fmt.Sprintf("worker %d", target.n)) {
			hit, f.hit = targetInstance, targetInstance
		}
		f.resumed = r.nextRequestAfter(f.at, hit, 60*time.Second)
		r.record(f)
		time.Sleep(time.Duration(2+r.rng.IntN(3)) * time.Second)
	}
}

// awaitServing waits until a worker is active and APIOps has seen a request from it
// in the last second.
func (r *chaosRun) awaitServing(timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, w := range r.workers {
			if w.role() != "active" {
				continue
			}
			instance := w.instance()
			arrivals, _, _ := r.ledger.snapshot()
			for _, a := range slices.Backward(arrivals) {
				if time.Since(a.at) > time.Second {
					break
				}
				if instance != "" && strings.Contains(a.instance, instance) {
					return
				}
			}
		}
	}
}

// active is the worker that says it is active, or any when none does right now.
func (r *chaosRun) active() *workerProc {
	for _, w := range r.workers {
		if w.role() == "active" {
			return w
		}
	}
	return r.workers[r.rng.IntN(len(r.workers))]
}

// watchTakeover runs the rest of a fault (heal) while it measures how long until an
// instance other than hit is active: another worker, or the hit one's restarted
// process.
func (r *chaosRun) watchTakeover(f *fault, hit string, rest func()) {
	done := make(chan struct{})
	go func() { defer close(done); rest() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, w := range r.workers {
			if w.role() == "active" && w.instance() != hit {
				f.takeover = time.Since(f.at)
				<-done
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-done
}

// stepdown asks JetStream for a leader's stepdown and logs a refusal: a fault that
// did not happen must show.
func (r *chaosRun) stepdown(subject string) {
	msg, err := r.admin.Request(subject, nil, 5*time.Second)
	if err != nil {
		r.t.Logf("%s: %v", subject, err)
		return
	}
	var answer struct {
		Error *struct{ Description string }
	}
	if json.Unmarshal(msg.Data, &answer) != nil || answer.Error != nil {
		r.t.Logf("%s: %s", subject, msg.Data)
	}
}

// commandConsumers names the consumers of the command stream.
func (r *chaosRun) commandConsumers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, _ := jetstream.New(r.admin)
	stream, err := js.Stream(ctx, "APIOPS_COMMANDS")
	if err != nil {
		r.t.Logf("the command stream's consumers: %v", err)
		return nil
	}
	var names []string
	list := stream.ConsumerNames(ctx)
	for name := range list.Name() {
		names = append(names, name)
	}
	if err := list.Err(); err != nil {
		r.t.Logf("the command stream's consumers: %v", err)
	}
	return names
}

// nextRequestAfter is how long after t APIOps saw its next request from an instance
// other than hit ("" for any), waiting up to max; -1 if none came.
func (r *chaosRun) nextRequestAfter(t time.Time, hit string, max time.Duration) time.Duration {
	for end := time.Now().Add(max); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		arrivals, _, _ := r.ledger.snapshot()
		first := time.Duration(-1)
		for _, a := range slices.Backward(arrivals) {
			if a.at.Before(t) {
				break
			}
			if hit == "" || !strings.Contains(a.instance, hit) {
				first = a.at.Sub(t)
			}
		}
		if first >= 0 {
			return first
		}
	}
	return -1
}

// awaitResults waits until the result stream holds n results.
func (r *chaosRun) awaitResults(n int, timeout time.Duration) {
	js, _ := jetstream.New(r.admin)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stream, err := js.Stream(ctx, "APIOPS_RESULTS")
		if err == nil {
			if info, err := stream.Info(ctx); err == nil && info.State.Msgs >= uint64(n) {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(250 * time.Millisecond)
	}
	r.t.Errorf("the result stream did not reach %d results within %v", n, timeout)
}
