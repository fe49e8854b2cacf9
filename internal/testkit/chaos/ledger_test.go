package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const apiToken = "chaos-token"

// ledger is the APIOps the workers call: it records every request, in the order they
// arrive, with the command it belongs to, counts requests that overlap on one resource,
// and keeps each resource's state. Each command's index is in its request: the
// truststore's name for a credential, the keyStoreId for a proxy's mTLS.
type ledger struct {
	mu       sync.Mutex
	arrivals []arrival
	inFlight map[string][]arrival // the requests APIOps is answering, by resource
	overlaps []string
	state    map[string]int // resource → index of the command applied last
}

type arrival struct {
	resource string
	index    int
	instance string // from the User-Agent: which worker called
	at       time.Time
}

func newLedger() *ledger {
	return &ledger{inFlight: make(map[string][]arrival), state: make(map[string]int)}
}

func (l *ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+apiToken {
		http.Error(w, `{"error":"unauthorized","error_description":"bad token"}`, http.StatusUnauthorized)
		return
	}
	resource, index, ok := parseRequest(r)
	if !ok {
		http.Error(w, `{"error":"bad_request","error_description":"not a chaos command"}`, http.StatusBadRequest)
		return
	}
	a := arrival{resource: resource, index: index, instance: r.Header.Get("User-Agent"), at: time.Now()}
	l.mu.Lock()
	l.arrivals = append(l.arrivals, a)
	for _, other := range l.inFlight[resource] {
		l.overlaps = append(l.overlaps, fmt.Sprintf("%s #%d from %s at %s while #%d from %s since %s", resource, index, a.instance,
			a.at.Format(time.TimeOnly+".000"), other.index, other.instance, other.at.Format(time.TimeOnly+".000")))
	}
	l.inFlight[resource] = append(l.inFlight[resource], a)
	l.mu.Unlock()
	time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond) // APIOps takes a while
	l.mu.Lock()
	l.inFlight[resource] = slices.DeleteFunc(l.inFlight[resource], func(b arrival) bool { return b == a })
	l.state[resource] = index
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(resource, "proxy/") {
		_, _ = w.Write([]byte(`{"success":true}`))
		return
	}
	_, _ = w.Write([]byte(`{"success":true,"deploymentResult":{"success":true,"message":"Deployment completed successfully",` +
		`"environmentResults":[{"environmentName":"production","success":true,"message":"Deployed successfully"}]}}`))
}

// parseRequest names the resource a request changes and the index of its command.
func parseRequest(r *http.Request) (resource string, index int, ok bool) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// apiops/projects/<p>/credentials/<user>/truststore/<ks-N>
	if len(parts) == 7 && parts[3] == "credentials" && parts[5] == "truststore" && r.Method == http.MethodPut {
		index, ok = commandIndex(parts[6])
		return "credential/" + parts[4], index, ok
	}
	// apiops/projects/<p>/apiProxies/<name>/settings/mtls
	if len(parts) == 7 && parts[3] == "apiProxies" && parts[6] == "mtls" && r.Method == http.MethodPatch {
		var body struct {
			KeyStoreID string `json:"keyStoreId"`
		}
		data, _ := io.ReadAll(r.Body)
		if json.Unmarshal(data, &body) != nil {
			return "", 0, false
		}
		index, ok = commandIndex(body.KeyStoreID)
		return "proxy/" + parts[4], index, ok
	}
	return "", 0, false
}

func commandIndex(name string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "ks-"))
	return n, err == nil && strings.HasPrefix(name, "ks-")
}

// snapshot copies what the ledger recorded.
func (l *ledger) snapshot() (arrivals []arrival, overlaps []string, state map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	state = make(map[string]int, len(l.state))
	for k, v := range l.state {
		state[k] = v
	}
	return append([]arrival(nil), l.arrivals...), append([]string(nil), l.overlaps...), state
}
