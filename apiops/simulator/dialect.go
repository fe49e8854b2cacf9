package simulator

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Dialect is one of the forms in which APIOps's documentation shows its
// answers. Endpoints compute what they did once (an outcome or an apiError);
// the dialect only decides how that is encoded, so every dialect reports the
// same environments, with the same success, for the same request and state.
type Dialect string

const (
	// DialectSeed answers as the endpoint pages the project started from:
	// {"success":true,...} and {"error","error_description"} with 404 for a
	// missing project or proxy. It is the default.
	DialectSeed Dialect = "seed"
	// DialectDocs answers in today's general envelope (error-handling.mdx and
	// the credential secret pages): {"status":"SUCCESS",...} and
	// {"status":"FAILURE","resultMessage":...}, never 404 for a missing resource.
	DialectDocs Dialect = "docs"
	// DialectOpenAPI answers as openapi.yaml's schemas: ApiOpsResponseSuccess
	// with per-pod deployment results, ApiOpsResponseKeystore, and mTLS
	// keystores named by keyStoreName rather than by id.
	DialectOpenAPI Dialect = "openapi"
	// DialectMixed answers each endpoint as today's page for that endpoint
	// shows it, so shapes differ between endpoints of one server.
	DialectMixed Dialect = "mixed"
)

var dialects = []Dialect{DialectSeed, DialectDocs, DialectOpenAPI, DialectMixed}

// Dialects lists every dialect, the default first.
func Dialects() []Dialect { return slices.Clone(dialects) }

// ParseDialect returns the dialect named s.
func ParseDialect(s string) (Dialect, error) {
	d := Dialect(s)
	if !slices.Contains(dialects, d) {
		return "", fmt.Errorf("unknown dialect %q: want one of %s", s, DialectNames())
	}
	return d, nil
}

// DialectNames lists the dialects' names, for usage texts: "seed, docs, …".
func DialectNames() string {
	names := make([]string, len(dialects))
	for i, d := range dialects {
		names[i] = string(d)
	}
	return strings.Join(names, ", ")
}

// namesKeystores tells whether the dialect's mTLS PATCH names keystores by
// keyStoreName, as openapi.yaml's RoutingMTLSSettingsDTO does, instead of by
// keyStoreId, as update-mtls-settings.mdx does.
func (d Dialect) namesKeystores() bool { return d == DialectOpenAPI || d == DialectMixed }

// action tells the renderer which kind of endpoint produced an outcome,
// because some dialects encode kinds differently.
type action int

const (
	credentialSecret action = iota
	keystoreChange
	mtlsChange
	keystoreRead
	tokenGrant
	// keystoreList, certificateList and routeRead (deploy-status and
	// route-health) read lists and entries; keystoreExport answers a file.
	keystoreList
	certificateList
	routeRead
	keystoreExport
	// keyChange and certificateChange are answered as keystoreChange is,
	// proxyDeployment (deploy, undeploy, rollback) as mtlsChange is.
	keyChange
	certificateChange
	proxyDeployment
)

// outcome is what an endpoint did, in no dialect's encoding.
type outcome struct {
	action action
	// message says what was done, for the dialects whose bodies say it.
	message string
	// report is the deployment the change caused; nil when nothing was deployed.
	report *deploymentReport
	// keystore is the keystore written or read, for bodies that list it.
	keystore *keystoreView
	// item is what the other actions show: a key's or certificate's DTO, a
	// route's entry, the []*keystoreView or []certificateDTO of a list.
	item  any
	grant grant
	// file and fileName are the keystore file an export answers.
	file     []byte
	fileName string
}

// rollout is what a deployment did, which decides its messages.
type rollout int

const (
	deployment rollout = iota
	undeployment
	// redeployment deploys a credential again after a secret was taken from
	// it: the pages the seed comes from call that an undeployment, today's
	// pages a deployment.
	redeployment
)

// words are the overall name and the per-environment success text.
func (ro rollout) words(d Dialect) (name, done string) {
	if ro == undeployment || ro == redeployment && d == DialectSeed {
		return "Undeployment", "Undeployed successfully"
	}
	return "Deployment", "Deployed successfully"
}

// deploymentReport is a deployment's result per environment.
type deploymentReport struct {
	rollout      rollout
	environments []environmentOutcome
}

type environmentOutcome struct {
	name string
	// index is the environment's position in its project, which fixes the
	// addresses of its pods.
	index int
	ok    bool
}

func (r *deploymentReport) success() bool {
	return !slices.ContainsFunc(r.environments, func(e environmentOutcome) bool { return !e.ok })
}

// failedDetail is the text of an environment, or a pod, whose deployment failed.
const failedDetail = "Gateway timeout"

// keystoreView is a keystore as an answer shows it, copied under the lock.
type keystoreView struct {
	id, name, description, projectID string
	environments                     []keystoreEnvironmentView
}

type keystoreEnvironmentView struct {
	name, id, alias, keyStoreType string
	// sealedFile and sealedPassword stand in for the encrypted values that
	// list-keystores.mdx shows; they never equal the real ones.
	sealedFile, sealedPassword string
}

// grant is an issued token.
type grant struct {
	token string
	// lifetime is 0 for a token that never expires.
	lifetime time.Duration
}

// apiError is an APIOps error answer. It does not implement error, so a nil
// *apiError can never become a non-nil error interface on its way out.
type apiError struct {
	// status is the seed dialect's; the others answer 400 where it says 404,
	// unless routing is set.
	status int
	// code is the seed dialect's error code.
	code string
	text string
	// envelopeText replaces text in the dialects with a status/resultMessage
	// envelope, where today's pages word it differently.
	envelopeText string
	// routing marks an answer of the HTTP layer (no such endpoint, method not
	// allowed, unreadable body), not of an endpoint: its status holds in every dialect.
	routing bool
	// oauth marks the token endpoint's errors, which come in OAuth's
	// {error, error_description} shape in every dialect, except a 401 in the
	// docs dialect (error-handling.mdx shows the envelope there).
	oauth bool
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "bad_request", text: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", text: fmt.Sprintf(format, args...)}
}

// authFailure is why a request's token was refused.
type authFailure int

const (
	authMissing authFailure = iota + 1
	authInvalid
	authExpired
)

func unauthorized(why authFailure) *apiError {
	e := &apiError{status: http.StatusUnauthorized, code: "unauthorized_client", text: "Invalid token"}
	switch why {
	case authMissing:
		e.envelopeText = "Empty Key! Client must be authenticated to access this resource."
	case authExpired:
		e.envelopeText = "Token was expired!"
	default:
		e.envelopeText = "Token is not valid!"
	}
	return e
}

// failure encodes an error in the dialect.
func (d Dialect) failure(e *apiError) (int, any) {
	if d == DialectSeed || e.oauth && !(d == DialectDocs && e.status == http.StatusUnauthorized) {
		return e.status, errorBody{e.code, e.text}
	}
	status := e.status
	if status == http.StatusNotFound && !e.routing {
		status = http.StatusBadRequest
	}
	return status, envelopeError{"FAILURE", cmp.Or(e.envelopeText, e.text)}
}

// shape is one encoding of a change's success.
type shape int

const (
	// successShape: {"success":true}, with the per-environment
	// deploymentResult when something was deployed.
	successShape shape = iota
	// statusShape: as successShape under "status":"SUCCESS".
	statusShape
	// responseSuccessShape: openapi.yaml's ApiOpsResponseSuccess, per pod.
	responseSuccessShape
	// responseKeystoreShape: openapi.yaml's ApiOpsResponseKeystore.
	responseKeystoreShape
	// deploymentResultsShape: update-mtls-settings.mdx's {"success":true} or
	// {"success":true,"deploymentResult":{"success","deploymentResults"}}.
	deploymentResultsShape
)

var changeShapes = func() map[Dialect]map[action]shape {
	shapes := map[Dialect]map[action]shape{
		DialectSeed:    {credentialSecret: successShape, keystoreChange: successShape, mtlsChange: successShape},
		DialectDocs:    {credentialSecret: statusShape, keystoreChange: statusShape, mtlsChange: statusShape},
		DialectOpenAPI: {credentialSecret: responseSuccessShape, keystoreChange: responseKeystoreShape, mtlsChange: responseSuccessShape},
		DialectMixed:   {credentialSecret: statusShape, keystoreChange: successShape, mtlsChange: deploymentResultsShape},
	}
	// Keys and certificates are keys-secrets like keystores; a deployment of a
	// proxy answers as the mTLS PATCH that deploys does.
	for _, m := range shapes {
		m[keyChange], m[certificateChange] = m[keystoreChange], m[keystoreChange]
		m[proxyDeployment] = m[mtlsChange]
	}
	return shapes
}()

// success encodes an outcome in the dialect.
func (d Dialect) success(o outcome) any {
	switch o.action {
	case keystoreRead:
		return d.keystoreRead(o.keystore)
	case tokenGrant:
		return d.token(o.grant)
	case keystoreList:
		return d.keystoreList(o.item.([]*keystoreView))
	case certificateList:
		// list-certificates.mdx has no resultCount; get-certificate.mdx's
		// {"success":true,"resultList":[...]} is the seed's form.
		if d == DialectSeed {
			return successItems{Success: true, ResultList: o.item}
		}
		return statusItems{Status: "SUCCESS", ResultList: o.item}
	case routeRead:
		return d.routeRead(o.item)
	}
	switch changeShapes[d][o.action] {
	case statusShape:
		return statusReply{Status: "SUCCESS", DeploymentResult: d.byEnvironment(o.report)}
	case responseSuccessShape:
		return responseSuccess{
			Status: "SUCCESS", ResultMessage: o.message, ResultList: []string{},
			DeploymentResult: d.byPod(o.report),
		}
	case responseKeystoreShape:
		item := o.item
		if o.keystore != nil {
			item = o.keystore.dto()
		}
		return responseKeystore{Status: "SUCCESS", ResultMessage: o.message, ResultList: []any{item}, ResultCount: 1}
	case deploymentResultsShape:
		return succeeded(d.deploymentResults(o.report))
	default:
		return succeeded(d.byEnvironment(o.report))
	}
}

// succeeded is {"success":true} with the deploymentResult when there is one:
// a nil pointer must not reach the interface, where omitempty would keep it.
func succeeded[T any](result *T) successReply {
	reply := successReply{Success: true}
	if result != nil {
		reply.DeploymentResult = result
	}
	return reply
}

func (d Dialect) keystoreRead(ks *keystoreView) any {
	switch d {
	case DialectSeed:
		return successList{Success: true, ResultList: []keystoreDTO{ks.dto()}}
	case DialectMixed:
		return listedKeystores{Status: "SUCCESS", ResultList: []listedKeystore{ks.listed()}}
	default:
		return statusList{Status: "SUCCESS", ResultList: []keystoreDTO{ks.dto()}, ResultCount: 1}
	}
}

// keystoreList is GET keystores/: each keystore as GET keystores/{name}/
// shows it in the dialect, with a resultCount.
func (d Dialect) keystoreList(views []*keystoreView) any {
	switch d {
	case DialectSeed:
		dtos := make([]keystoreDTO, len(views))
		for i, ks := range views {
			dtos[i] = ks.dto()
		}
		return successCountedItems{Success: true, ResultList: dtos, ResultCount: len(views)}
	case DialectMixed:
		listed := make([]listedKeystore, len(views))
		for i, ks := range views {
			listed[i] = ks.listed()
		}
		return statusCountedItems{Status: "SUCCESS", ResultList: listed, ResultCount: len(views)}
	default:
		dtos := make([]keystoreDTO, len(views))
		for i, ks := range views {
			dtos[i] = ks.dto()
		}
		return statusList{Status: "SUCCESS", ResultList: dtos, ResultCount: len(views)}
	}
}

// routeRead is a deploy-status or route-health entry: beside "success" in the
// seed dialect, as the only item of a resultList in the others.
func (d Dialect) routeRead(entry any) any {
	if d != DialectSeed {
		return statusCountedItems{Status: "SUCCESS", ResultList: []any{entry}, ResultCount: 1}
	}
	switch e := entry.(type) {
	case deployStatus:
		return seededDeployStatus{Success: true, deployStatus: e}
	case routeHealth:
		return seededRouteHealth{Success: true, routeHealth: e}
	}
	panic(fmt.Sprintf("simulator: no seed form for %T", entry))
}

func (d Dialect) token(g grant) tokenReply {
	reply := tokenReply{AccessToken: g.token, TokenType: "Bearer"}
	if d == DialectOpenAPI {
		reply.TokenType = "" // TokenResponse has no token_type
	}
	if g.lifetime > 0 {
		reply.ExpiresIn = int64((g.lifetime + time.Second - 1) / time.Second)
	}
	return reply
}

// byEnvironment is a deploymentResult in its per-environment form, nil when
// nothing was deployed, so the member is left out.
func (d Dialect) byEnvironment(r *deploymentReport) *environmentResults {
	if r == nil {
		return nil
	}
	name, done := r.rollout.words(d)
	out := &environmentResults{Success: r.success(), EnvironmentResults: make([]environmentResult, len(r.environments))}
	for i, e := range r.environments {
		out.EnvironmentResults[i] = environmentResult{EnvironmentName: e.name, Success: e.ok, Message: e.text(done)}
	}
	out.Message = name + " completed successfully"
	if !out.Success {
		out.Message = name + " completed with errors"
	}
	return out
}

func (d Dialect) deploymentResults(r *deploymentReport) *deploymentResultList {
	if r == nil {
		return nil
	}
	_, done := r.rollout.words(d)
	out := &deploymentResultList{Success: r.success(), DeploymentResults: make([]environmentResult, len(r.environments))}
	for i, e := range r.environments {
		out.DeploymentResults[i] = environmentResult{EnvironmentName: e.name, Success: e.ok, Message: e.text(done)}
	}
	return out
}

func (e environmentOutcome) text(done string) string {
	if e.ok {
		return done
	}
	return failedDetail
}

// podsPerEnvironment is how many gateway pods each environment runs. With two,
// a failed environment can show one pod that succeeded, as a real partial
// rollout does, so that a reader must group pods by envName.
const podsPerEnvironment = 2

// Response times of the simulated pods, in milliseconds: fixed so that bodies
// can be compared exactly.
const (
	podResponseMillis     = 42
	timedOutPodMillis     = 30000
	podResponseStepMillis = 3
)

// byPod is openapi.yaml's DeploymentResult in its per-pod form: a flat
// detailList naming each pod's environment. When an environment fails only its
// last pod fails. It is nil when nothing was deployed, which encodes as null.
func (d Dialect) byPod(r *deploymentReport) *podResults {
	if r == nil {
		return nil
	}
	_, done := r.rollout.words(d)
	out := &podResults{Success: r.success(), DetailList: make([]podResult, 0, podsPerEnvironment*len(r.environments))}
	for _, e := range r.environments {
		for pod := range podsPerEnvironment {
			p := podResult{
				EnvName:      e.name,
				PodName:      podName(e.name, pod),
				PodIP:        podIP(e.index, pod),
				Success:      true,
				Detail:       done,
				ResponseTime: podResponseMillis + podResponseStepMillis*int64(pod),
			}
			if !e.ok && pod == podsPerEnvironment-1 {
				p.Success, p.Detail, p.ResponseTime = false, failedDetail, timedOutPodMillis
			}
			out.ResponseTime = max(out.ResponseTime, p.ResponseTime)
			out.DetailList = append(out.DetailList, p)
		}
	}
	return out
}

// podName and podIP name and address the pod-th pod of an environment, the
// index-th of its project.
func podName(env string, pod int) string { return fmt.Sprintf("%s-worker-%d", env, pod) }

func podIP(index, pod int) string { return fmt.Sprintf("10.0.%d.%d", index+1, pod+1) }

func (ks *keystoreView) dto() keystoreDTO {
	out := keystoreDTO{
		ID: ks.id, Name: ks.name, Description: ks.description, ProjectID: ks.projectID,
		Environments: make([]keystoreEnvironmentDTO, len(ks.environments)),
	}
	for i, e := range ks.environments {
		out.Environments[i] = keystoreEnvironmentDTO{EnvironmentName: e.name, Alias: e.alias, KeyStoreType: e.keyStoreType}
	}
	return out
}

func (ks *keystoreView) listed() listedKeystore {
	out := listedKeystore{
		Name: ks.name, Description: ks.description, ProjectID: ks.projectID,
		Environments: make([]listedKeystoreEnvironment, len(ks.environments)),
	}
	for i, e := range ks.environments {
		out.Environments[i] = listedKeystoreEnvironment{
			EnvironmentID: e.id, File: e.sealedFile, Password: e.sealedPassword, Alias: e.alias, KeyStoreType: e.keyStoreType,
		}
	}
	return out
}

// The encodings. Members are never omitted unless marked, so that each
// dialect's shape is exactly what its pages show.
type (
	// errorBody is the seed dialect's and OAuth's error shape.
	errorBody struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	// envelopeError is today's error shape, openapi.yaml's ApiOpsResponseError.
	envelopeError struct {
		Status        string `json:"status"`
		ResultMessage string `json:"resultMessage"`
	}
	successReply struct {
		Success          bool `json:"success"`
		DeploymentResult any  `json:"deploymentResult,omitempty"`
	}
	statusReply struct {
		Status           string              `json:"status"`
		DeploymentResult *environmentResults `json:"deploymentResult,omitempty"`
	}
	environmentResults struct {
		Success            bool                `json:"success"`
		Message            string              `json:"message"`
		EnvironmentResults []environmentResult `json:"environmentResults"`
	}
	environmentResult struct {
		EnvironmentName string `json:"environmentName"`
		Success         bool   `json:"success"`
		Message         string `json:"message"`
	}
	deploymentResultList struct {
		Success           bool                `json:"success"`
		DeploymentResults []environmentResult `json:"deploymentResults"`
	}
	responseSuccess struct {
		Status           string      `json:"status"`
		ResultMessage    string      `json:"resultMessage"`
		ResultList       []string    `json:"resultList"`
		ResultCount      int         `json:"resultCount"`
		DeploymentResult *podResults `json:"deploymentResult"`
	}
	podResults struct {
		Success      bool        `json:"success"`
		ResponseTime int64       `json:"responseTime"`
		DetailList   []podResult `json:"detailList"`
	}
	podResult struct {
		EnvName      string `json:"envName"`
		PodName      string `json:"podName"`
		PodIP        string `json:"podIp"`
		Success      bool   `json:"success"`
		Detail       string `json:"detail"`
		ResponseTime int64  `json:"responseTime"`
	}
	// responseKeystore is openapi.yaml's ApiOpsResponseKeystore; keys and
	// certificates list their own DTO in it.
	responseKeystore struct {
		Status        string `json:"status"`
		ResultMessage string `json:"resultMessage"`
		ResultList    []any  `json:"resultList"`
		ResultCount   int    `json:"resultCount"`
	}
	statusItems struct {
		Status     string `json:"status"`
		ResultList any    `json:"resultList"`
	}
	statusCountedItems struct {
		Status      string `json:"status"`
		ResultList  any    `json:"resultList"`
		ResultCount int    `json:"resultCount"`
	}
	successItems struct {
		Success    bool `json:"success"`
		ResultList any  `json:"resultList"`
	}
	successCountedItems struct {
		Success     bool `json:"success"`
		ResultList  any  `json:"resultList"`
		ResultCount int  `json:"resultCount"`
	}
	// seededDeployStatus and seededRouteHealth put an entry's members beside
	// "success".
	seededDeployStatus struct {
		Success bool `json:"success"`
		deployStatus
	}
	seededRouteHealth struct {
		Success bool `json:"success"`
		routeHealth
	}
	// keyDTO is a key as its answers show it: no content.
	keyDTO struct {
		Name         string              `json:"name"`
		Description  string              `json:"description"`
		KeyType      string              `json:"keyType"`
		ProjectID    string              `json:"projectId"`
		Environments []keyEnvironmentDTO `json:"cryptoKeyInfoEnvironmentList"`
	}
	keyEnvironmentDTO struct {
		EnvironmentName string `json:"environmentName"`
		Alias           string `json:"alias"`
	}
	statusList struct {
		Status      string        `json:"status"`
		ResultList  []keystoreDTO `json:"resultList"`
		ResultCount int           `json:"resultCount"`
	}
	successList struct {
		Success    bool          `json:"success"`
		ResultList []keystoreDTO `json:"resultList"`
	}
	// keystoreDTO is openapi.yaml's KeystoreManagementDTO.
	keystoreDTO struct {
		ID           string                   `json:"id"`
		Name         string                   `json:"name"`
		Description  string                   `json:"description"`
		ProjectID    string                   `json:"projectId"`
		Environments []keystoreEnvironmentDTO `json:"keyStoreEnvironmentList"`
	}
	keystoreEnvironmentDTO struct {
		EnvironmentName string `json:"environmentName"`
		Alias           string `json:"alias"`
		KeyStoreType    string `json:"keyStoreType"`
	}
	// listedKeystores is a keystore as list-keystores.mdx shows it.
	listedKeystores struct {
		Status     string           `json:"status"`
		ResultList []listedKeystore `json:"resultList"`
	}
	listedKeystore struct {
		Name         string                      `json:"name"`
		Description  string                      `json:"description"`
		ProjectID    string                      `json:"projectId"`
		Environments []listedKeystoreEnvironment `json:"keyStoreEnvironmentList"`
	}
	listedKeystoreEnvironment struct {
		EnvironmentID string `json:"environmentId"`
		File          string `json:"file"`
		Password      string `json:"password"`
		Alias         string `json:"alias"`
		KeyStoreType  string `json:"keyStoreType"`
	}
	tokenReply struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type,omitempty"`
		ExpiresIn   int64  `json:"expires_in,omitempty"`
	}
)
