package simulator

import (
	"fmt"
	"slices"
	"strconv"
)

// proxy is an API proxy: its saved mTLS settings, the revisions deployments
// made of them, and what each environment of its project runs.
type proxy struct {
	settings MTLSSettings
	// revisions[i] is revision i+1: a snapshot of the saved settings, taken by
	// a deployment when they differed from the latest revision.
	revisions []MTLSSettings
	routes    map[string]*route // by environment
}

// route is what one environment runs of a proxy.
type route struct {
	deployed bool
	// revision is the revision deployed, or last deployed when deployed is false.
	revision int
	fault    RouteFault
	// faultRevision is the revision the environment ran when fault was set;
	// fault.Unhealthy shows while it runs a later one.
	faultRevision int
	// previous is the revision before the last deploy or rollback, which a
	// lagging pod reports for lagReads more route-health reads.
	previous int
	lagReads int
}

// RouteFault makes an environment's route of a proxy misbehave in
// route-health, as gateway pods do that fail to take or are slow to take a
// deployment. The zero value is a healthy route.
type RouteFault struct {
	// Unhealthy: while the environment runs a revision later than the one it
	// ran when the fault was set, one pod is inactive (podsActive = podCount-1)
	// and the route inconsistent. Rolling back to that revision or an older one
	// heals it.
	Unhealthy bool
	// LagReads: after each deploy or rollback to the environment, one pod
	// reports the revision the environment ran before for the next LagReads
	// route-health reads, then catches up.
	LagReads int
}

// newProxy is a seeded proxy: revision 1 is its seeded settings, deployed in
// every environment of its project.
func newProxy(m MTLSSettings, environments []string) *proxy {
	px := &proxy{
		settings:  m,
		revisions: []MTLSSettings{m.clone()},
		routes:    make(map[string]*route, len(environments)),
	}
	for _, env := range environments {
		px.routes[env] = &route{deployed: true, revision: 1, previous: 1}
	}
	return px
}

// clone copies m, so that the copy shares no slice with it.
func (m MTLSSettings) clone() MTLSSettings {
	m.SupportedProtocolList = slices.Clone(m.SupportedProtocolList)
	return m
}

// sameSettings tells whether a and b are the same settings; an empty protocol
// list equals an absent one.
func sameSettings(a, b MTLSSettings) bool {
	return a.Enabled == b.Enabled && a.KeyStoreID == b.KeyStoreID && a.TrustStoreID == b.TrustStoreID &&
		slices.Equal(a.SupportedProtocolList, b.SupportedProtocolList) &&
		a.HostnameVerifierType == b.HostnameVerifierType && a.KeyStoreName == b.KeyStoreName &&
		a.TrustStoreName == b.TrustStoreName && a.DisableSSLValidation == b.DisableSSLValidation && a.Type == b.Type
}

// latest is the number of the latest revision.
func (px *proxy) latest() int { return len(px.revisions) }

// redeployRequired tells whether env runs other settings than the saved ones.
func (px *proxy) redeployRequired(env string) bool {
	rt := px.routes[env]
	return rt.deployed && !sameSettings(px.settings, px.revisions[rt.revision-1])
}

// run makes the route run revision, deployed, starting its lag if it has one.
func (rt *route) run(revision int) {
	rt.previous, rt.revision, rt.deployed = rt.revision, revision, true
	rt.lagReads = rt.fault.LagReads
}

// deployProxy deploys a proxy's saved settings to envs: a new revision is
// taken when they differ from the latest one, and every environment that does
// not fail (Faults.FailEnvironments) runs the latest revision; a failed one
// keeps what it ran. The caller holds s.mu.
func (s *Server) deployProxy(p *project, px *proxy, envs []string) *deploymentReport {
	if len(envs) > 0 && !sameSettings(px.settings, px.revisions[px.latest()-1]) {
		px.revisions = append(px.revisions, px.settings.clone())
	}
	report := s.deploy(p, envs, deployment)
	for _, e := range report.environments {
		if e.ok {
			px.routes[e.name].run(px.latest())
		}
	}
	return report
}

func proxyNotFound(name string) *apiError {
	return notFound("ApiProxy (name: %s) was not found!", name)
}

// proxyRoute finds the request's project, proxy and the environment named by
// the path. The caller holds s.mu.
func (s *Server) proxyRoute(r request) (*project, *proxy, string, *apiError) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, "", err
	}
	name := r.PathValue("apiProxyName")
	px, ok := p.proxies[name]
	if !ok {
		return nil, nil, "", proxyNotFound(name)
	}
	env := r.PathValue("environmentName")
	if !slices.Contains(p.environments, env) {
		return nil, nil, "", notFound("Environment (name: %s) was not found!", env)
	}
	return p, px, env, nil
}

// deployToEnvironment is deploy-api-proxy.mdx's POST: the saved settings are
// deployed to one environment.
func (s *Server) deployToEnvironment(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, px, env, err := s.proxyRoute(r)
	if err != nil {
		return outcome{}, err
	}
	return outcome{
		action:  proxyDeployment,
		message: fmt.Sprintf("ApiProxy (name: %s) is deployed to Environment (name: %s).", r.PathValue("apiProxyName"), env),
		report:  s.deployProxy(p, px, []string{env}),
	}, nil
}

// undeployFromEnvironment is undeploy-api-proxy.mdx's DELETE. An environment
// that fails stays deployed.
func (s *Server) undeployFromEnvironment(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, px, env, err := s.proxyRoute(r)
	if err != nil {
		return outcome{}, err
	}
	report := s.deploy(p, []string{env}, undeployment)
	if report.success() {
		px.routes[env].deployed = false
	}
	return outcome{
		action:  proxyDeployment,
		message: fmt.Sprintf("ApiProxy (name: %s) is undeployed from Environment (name: %s).", r.PathValue("apiProxyName"), env),
		report:  report,
	}, nil
}

// rollback makes an environment run an earlier (or any existing) revision.
// It deliberately leaves the saved settings alone: a rollback redeploys a
// snapshot, it does not edit the proxy, so the environment may then need a
// redeploy (redeployRequired) until the settings are saved again or the
// latest revision is deployed.
func (s *Server) rollback(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return outcome{}, err
	}
	name := r.PathValue("apiProxyName")
	px, ok := p.proxies[name]
	if !ok {
		return outcome{}, proxyNotFound(name)
	}
	text := r.PathValue("revision")
	revision, convErr := strconv.Atoi(text)
	if convErr != nil {
		return outcome{}, badRequest("Invalid revision: %q (expected a revision number)", text)
	}
	q := r.URL.Query()
	env := q.Get("environmentName")
	switch {
	case env == "":
		return outcome{}, badRequest("environmentName is required")
	case !slices.Contains(p.environments, env):
		return outcome{}, badRequest("Environment (name: %s) was not found!", env)
	case revision < 1 || revision > px.latest():
		return outcome{}, badRequest("Revision %d of ApiProxy (name: %s) was not found!", revision, name)
	}
	report := s.deploy(p, []string{env}, deployment)
	if report.success() {
		px.routes[env].run(revision)
	}
	return outcome{
		action:  proxyDeployment,
		message: fmt.Sprintf("ApiProxy (name: %s) is rolled back to revision %d on Environment (name: %s).", name, revision, env),
		report:  report,
	}, nil
}

// deployStatus is deploy-status's entry.
type deployStatus struct {
	EnvironmentName  string `json:"environmentName"`
	Deployed         bool   `json:"deployed"`
	Revision         int    `json:"revision"`
	RedeployRequired bool   `json:"redeployRequired"`
}

func (s *Server) getDeployStatus(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, px, env, err := s.proxyRoute(r)
	if err != nil {
		return outcome{}, err
	}
	rt := px.routes[env]
	return outcome{action: routeRead, item: deployStatus{
		EnvironmentName:  env,
		Deployed:         rt.deployed,
		Revision:         rt.revision,
		RedeployRequired: px.redeployRequired(env),
	}}, nil
}

// routeHealth is route-health's entry.
type routeHealth struct {
	EnvironmentName string     `json:"environmentName"`
	PodsActive      int        `json:"podsActive"`
	PodCount        int        `json:"podCount"`
	Inconsistent    bool       `json:"inconsistent"`
	Pods            []routePod `json:"pods"`
}

type routePod struct {
	PodName  string `json:"podName"`
	PodIP    string `json:"podIp"`
	Active   bool   `json:"active"`
	Revision int    `json:"revision"`
}

func (s *Server) getRouteHealth(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, px, env, err := s.proxyRoute(r)
	if err != nil {
		return outcome{}, err
	}
	return outcome{action: routeRead, item: px.routes[env].health(env, slices.Index(p.environments, env))}, nil
}

// health reads the route's pods, named as deployment results name them. Every
// pod runs the route's revision, except the last one under a fault: it is
// inactive, still on the revision of the fault's setting, while Unhealthy
// shows, and it reports the previous revision while it lags (which counts this
// read). An undeployed route's pods are all inactive, and consistently so.
func (rt *route) health(env string, index int) routeHealth {
	h := routeHealth{EnvironmentName: env, PodCount: podsPerEnvironment, Pods: make([]routePod, podsPerEnvironment)}
	for i := range h.Pods {
		h.Pods[i] = routePod{PodName: podName(env, i), PodIP: podIP(index, i), Active: rt.deployed, Revision: rt.revision}
	}
	if rt.deployed {
		last := &h.Pods[len(h.Pods)-1]
		if rt.fault.Unhealthy && rt.revision > rt.faultRevision {
			last.Active, last.Revision = false, rt.faultRevision
		}
		if rt.lagReads > 0 {
			rt.lagReads--
			last.Revision = rt.previous
		}
	}
	for _, pod := range h.Pods {
		if pod.Active {
			h.PodsActive++
		}
		if pod.Active != h.Pods[0].Active || pod.Revision != h.Pods[0].Revision {
			h.Inconsistent = true
		}
	}
	return h
}

// route finds a route for the exported accessors. The caller holds s.mu.
func (s *Server) route(projectName, proxyName, environment string) (*proxy, *route, bool) {
	p, ok := s.projects[projectName]
	if !ok {
		return nil, nil, false
	}
	px, ok := p.proxies[proxyName]
	if !ok {
		return nil, nil, false
	}
	rt, ok := px.routes[environment]
	return px, rt, ok
}

// SetRouteFault sets the fault of a proxy's route to an environment,
// replacing the one it had; RouteFault{} clears it, and any lag in progress. A
// route that does not exist, or a negative LagReads, is a programming error
// and panics.
func (s *Server) SetRouteFault(projectName, proxyName, environment string, f RouteFault) {
	if f.LagReads < 0 {
		panic(fmt.Sprintf("simulator: SetRouteFault(%s, %s, %s): LagReads %d is negative", projectName, proxyName, environment, f.LagReads))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, rt, ok := s.route(projectName, proxyName, environment)
	if !ok {
		panic(fmt.Sprintf("simulator: SetRouteFault(%s, %s, %s): no such project, API proxy or environment", projectName, proxyName, environment))
	}
	rt.fault, rt.faultRevision = f, rt.revision
	if f == (RouteFault{}) {
		rt.lagReads = 0
	}
}

// Deployed reports what a proxy's route to an environment runs: the settings
// of its revision, the revision, and whether it is deployed (when it is not,
// the revision it last ran). ok is false when there is no such route.
func (s *Server) Deployed(projectName, proxyName, environment string) (settings MTLSSettings, revision int, deployed bool, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	px, rt, ok := s.route(projectName, proxyName, environment)
	if !ok {
		return MTLSSettings{}, 0, false, false
	}
	return px.revisions[rt.revision-1].clone(), rt.revision, rt.deployed, true
}
