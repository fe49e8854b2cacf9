package apiopstest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// adminProject is the project whose keystores and keys every project may use.
const adminProject = "admin"

var (
	keystoreTypes     = []string{"JKS", "PKCS12"}
	tlsProtocols      = []string{"TLS_1_3", "TLS_1_2", "TLS_1_1", "TLS_1_0", "SSL_3_0"}
	hostnameVerifiers = []string{"NOOP", "DEFAULT", "STRICT", "BROWSER_COMPAT"}

	// mtlsSuccess is the whole success body of the mTLS endpoint, which deploys nothing.
	mtlsSuccess = json.RawMessage(`{"success":true}`)
)

// apiError is an APIOps error answer. It does not implement error, so a nil
// *apiError can never become a non-nil error interface on its way out.
type apiError struct {
	status      int
	code        string
	description string
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf(format, args...)}
}

// handler executes one endpoint. It returns the success body or the error.
type handler func(r *http.Request, body []byte) (any, *apiError)

// slot is one kind of credential secret assignment; the three kinds differ only
// in these details.
type slot struct {
	segment  string // path segment after credentials/{username}/
	param    string // wildcard naming the assigned item
	noun     string // the item in "has no ... assigned"
	notFound string // description when the item does not exist
	field    func(*CredentialState) *string
	exists   func(p *project, name string) bool
}

var slots = []slot{
	{
		segment:  "keystore",
		param:    "keystoreName",
		noun:     "keystore",
		notFound: "Keystore (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.Keystore },
		exists:   hasKeystore,
	},
	{
		segment:  "truststore",
		param:    "keystoreName",
		noun:     "truststore",
		notFound: "Truststore (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.Truststore },
		exists:   hasKeystore,
	},
	{
		segment:  "privateKey",
		param:    "keyName",
		noun:     "private key",
		notFound: "Key (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.PrivateKey },
		exists:   func(p *project, name string) bool { return p.keys[name] == "PRIVATE_KEY" },
	},
}

func hasKeystore(p *project, name string) bool {
	_, ok := p.keystores[name]
	return ok
}

// routes registers every endpoint. {$} keeps a trailing-slash pattern from
// matching a whole subtree, so a longer path is a 404 as in APIOps.
func (s *Server) routes() {
	const base = "/apiops/projects/{projectName}/"
	for _, sl := range slots {
		credential := base + "credentials/{username}/" + sl.segment + "/"
		s.mux.Handle("PUT "+credential+"{"+sl.param+"}/{$}", s.endpoint(s.assign(sl)))
		s.mux.Handle("DELETE "+credential+"{$}", s.endpoint(s.unassign(sl)))
	}
	s.mux.Handle("POST "+base+"keystores/{$}", s.endpoint(s.createKeystore))
	s.mux.Handle("PUT "+base+"keystores/{keystoreName}/{$}", s.endpoint(s.updateKeystore))
	s.mux.Handle("DELETE "+base+"keystores/{keystoreName}/{$}", s.endpoint(s.deleteKeystore))
	s.mux.Handle("PATCH "+base+"apiProxies/{apiProxyName}/settings/mtls/{$}", s.endpoint(s.patchMTLS))
}

// endpoint adapts a handler to the mux, which hands it the request's exchange.
func (s *Server) endpoint(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := w.(*exchange)
		v, err := h(r, x.body)
		if err != nil {
			s.respond(x.w, x.rec, err.status, errorBody{err.code, err.description})
			return
		}
		s.respond(x.w, x.rec, http.StatusOK, v)
	})
}

// project finds the request's project. The caller holds s.mu.
func (s *Server) project(r *http.Request) (*project, *apiError) {
	name := r.PathValue("projectName")
	p, ok := s.projects[name]
	if !ok {
		return nil, notFound("Project(%s) was not found or user does not have privilege to access it!", name)
	}
	return p, nil
}

// credential finds the request's project and credential. The caller holds s.mu.
func (s *Server) credential(r *http.Request) (*project, *CredentialState, *apiError) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, err
	}
	username := r.PathValue("username")
	c, ok := p.credentials[username]
	if !ok {
		return nil, nil, badRequest("Credential (username: %s) was not found!", username)
	}
	return p, c, nil
}

func (s *Server) assign(sl slot) handler {
	return func(r *http.Request, _ []byte) (any, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, c, err := s.credential(r)
		if err != nil {
			return nil, err
		}
		name := r.PathValue(sl.param)
		admin, hasAdmin := s.projects[adminProject]
		if !sl.exists(p, name) && !(hasAdmin && sl.exists(admin, name)) {
			return nil, badRequest(sl.notFound, name)
		}
		*sl.field(c) = name
		return s.report(p, deployment), nil
	}
}

func (s *Server) unassign(sl slot) handler {
	return func(r *http.Request, _ []byte) (any, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, c, err := s.credential(r)
		if err != nil {
			return nil, err
		}
		if *sl.field(c) == "" {
			return nil, badRequest("Credential (username: %s) has no %s assigned!", r.PathValue("username"), sl.noun)
		}
		*sl.field(c) = ""
		return s.report(p, undeployment), nil
	}
}

// keystoreInput is the create and update body. Pointers tell an absent field
// from an empty one, which matters for a partial update.
type keystoreInput struct {
	Name         *string                    `json:"name"`
	Description  *string                    `json:"description"`
	Environments []keystoreEnvironmentInput `json:"keyStoreEnvironmentList"`
}

type keystoreEnvironmentInput struct {
	EnvironmentName string `json:"environmentName"`
	File            string `json:"file"`
	Password        string `json:"password"`
	Alias           string `json:"alias"`
	KeyStoreType    string `json:"keyStoreType"`
}

func (s *Server) createKeystore(r *http.Request, body []byte) (any, *apiError) {
	var in keystoreInput
	decodeErr := decodeBody(body, &in, keystoreFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	if in.Name == nil || *in.Name == "" {
		return nil, badRequest("name is required")
	}
	if in.Environments == nil {
		return nil, badRequest("keyStoreEnvironmentList is required")
	}
	envs, err := p.keystoreEnvironments(in.Environments)
	if err != nil {
		return nil, err
	}
	if hasKeystore(p, *in.Name) {
		return nil, alreadyExists(*in.Name)
	}
	ks := &KeystoreState{Name: *in.Name, Environments: envs}
	if in.Description != nil {
		ks.Description = *in.Description
	}
	p.keystores[ks.Name] = ks
	return s.report(p, deployment), nil
}

func (s *Server) updateKeystore(r *http.Request, body []byte) (any, *apiError) {
	var in keystoreInput
	decodeErr := decodeBody(body, &in, keystoreFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return nil, err
	}
	if err := checkUpdateQuery(r.URL.Query()); err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	next := *ks
	if in.Name != nil {
		if *in.Name == "" {
			return nil, badRequest("name must not be empty")
		}
		next.Name = *in.Name
	}
	if in.Description != nil {
		next.Description = *in.Description
	}
	if in.Environments != nil {
		if next.Environments, err = p.keystoreEnvironments(in.Environments); err != nil {
			return nil, err
		}
	}
	if next.Name != ks.Name {
		if hasKeystore(p, next.Name) {
			return nil, alreadyExists(next.Name)
		}
		delete(p.keystores, ks.Name)
	}
	p.keystores[next.Name] = &next
	return s.report(p, deployment), nil
}

func (s *Server) deleteKeystore(r *http.Request, _ []byte) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return nil, err
	}
	if _, err := queryEnum(r.URL.Query(), "jwkDeleteAction", "NULLIFY", "DELETE"); err != nil {
		return nil, err
	}
	delete(p.keystores, ks.Name)
	return s.report(p, undeployment), nil
}

// keystore finds the request's project and keystore. The caller holds s.mu.
func (s *Server) keystore(r *http.Request) (*project, *KeystoreState, *apiError) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, err
	}
	name := r.PathValue("keystoreName")
	ks, ok := p.keystores[name]
	if !ok {
		return nil, nil, badRequest("Keystore (name: %s) is not found!", name)
	}
	return p, ks, nil
}

func alreadyExists(name string) *apiError {
	return badRequest("Keystore (name: %s) is already exist! Try update operation if want to change its value.", name)
}

func checkUpdateQuery(q url.Values) *apiError {
	action, err := queryEnum(q, "jwkUpdateAction", "NULLIFY", "UPDATE")
	if err != nil {
		return err
	}
	if _, err := queryEnum(q, "updateScope", "SAME_PROJECT", "ALL_PROJECTS"); err != nil {
		return err
	}
	if q.Has("updateScope") && action != "UPDATE" {
		return badRequest("updateScope is only allowed with jwkUpdateAction=UPDATE")
	}
	return nil
}

// queryEnum returns the query parameter key, "" when absent, refusing values
// outside allowed.
func queryEnum(q url.Values, key string, allowed ...string) (string, *apiError) {
	if !q.Has(key) {
		return "", nil
	}
	v := q.Get(key)
	if !slices.Contains(allowed, v) {
		return "", badRequest("Invalid %s: %q (expected %s)", key, v, strings.Join(allowed, " or "))
	}
	return v, nil
}

// keystoreEnvironments validates a keyStoreEnvironmentList against the project.
// The caller holds s.mu.
func (p *project) keystoreEnvironments(in []keystoreEnvironmentInput) ([]KeystoreEnvironment, *apiError) {
	if len(in) == 0 {
		return nil, badRequest("keyStoreEnvironmentList must not be empty")
	}
	out := make([]KeystoreEnvironment, 0, len(in))
	for i, e := range in {
		env := e.EnvironmentName
		switch {
		case env == "":
			return nil, badRequest("keyStoreEnvironmentList[%d].environmentName is required", i)
		case !slices.Contains(p.environments, env):
			return nil, badRequest("Environment (name: %s) was not found!", env)
		case slices.ContainsFunc(out, func(k KeystoreEnvironment) bool { return k.EnvironmentName == env }):
			return nil, badRequest("Environment (name: %s) is listed more than once in keyStoreEnvironmentList", env)
		}
		file, decodeErr := base64.StdEncoding.DecodeString(e.File)
		switch {
		case decodeErr != nil:
			return nil, badRequest("Invalid keystore file for environment %s: not valid base64", env)
		case len(file) == 0:
			return nil, badRequest("Invalid keystore file for environment %s: empty", env)
		case e.Password == "":
			return nil, badRequest("password is required for environment %s", env)
		case e.KeyStoreType == "":
			return nil, badRequest("keyStoreType is required for environment %s", env)
		case !slices.Contains(keystoreTypes, e.KeyStoreType):
			return nil, badRequest("Invalid keyStoreType for environment %s: %q (expected JKS or PKCS12)", env, e.KeyStoreType)
		}
		out = append(out, KeystoreEnvironment{
			EnvironmentName: env,
			File:            file,
			Password:        e.Password,
			Alias:           e.Alias,
			KeyStoreType:    e.KeyStoreType,
		})
	}
	return out, nil
}

// mtlsInput is the PATCH body; nil fields are left as they are.
type mtlsInput struct {
	Enabled               *bool    `json:"enabled"`
	KeyStoreID            *string  `json:"keyStoreId"`
	TrustStoreID          *string  `json:"trustStoreId"`
	SupportedProtocolList []string `json:"supportedProtocolList"`
	HostnameVerifierType  *string  `json:"hostnameVerifierType"`
}

func (s *Server) patchMTLS(r *http.Request, body []byte) (any, *apiError) {
	var in mtlsInput
	decodeErr := decodeBody(body, &in, mtlsFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("apiProxyName")
	current, ok := p.proxies[name]
	if !ok {
		return nil, notFound("ApiProxy (name: %s) was not found!", name)
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	merged, err := in.mergeOnto(*current)
	if err != nil {
		return nil, err
	}
	*current = merged
	return mtlsSuccess, nil
}

func (in mtlsInput) mergeOnto(m MTLSSettings) (MTLSSettings, *apiError) {
	for i, proto := range in.SupportedProtocolList {
		if !slices.Contains(tlsProtocols, proto) {
			return m, badRequest("Invalid supportedProtocolList[%d]: %q (expected one of %s)",
				i, proto, strings.Join(tlsProtocols, ", "))
		}
	}
	if in.HostnameVerifierType != nil && !slices.Contains(hostnameVerifiers, *in.HostnameVerifierType) {
		return m, badRequest("Invalid hostnameVerifierType: %q (expected one of %s)",
			*in.HostnameVerifierType, strings.Join(hostnameVerifiers, ", "))
	}
	if in.Enabled != nil {
		m.Enabled = *in.Enabled
	}
	if in.KeyStoreID != nil {
		m.KeyStoreID = *in.KeyStoreID
	}
	if in.TrustStoreID != nil {
		m.TrustStoreID = *in.TrustStoreID
	}
	if in.SupportedProtocolList != nil {
		m.SupportedProtocolList = slices.Clone(in.SupportedProtocolList)
	}
	if in.HostnameVerifierType != nil {
		m.HostnameVerifierType = *in.HostnameVerifierType
	}
	if m.Enabled && m.KeyStoreID == "" {
		return m, badRequest("KeyStore ID is required when mTLS is enabled")
	}
	return m, nil
}

// fieldSet lists the members an object may have, by exact name. A member maps to
// the fieldSet of the objects in its array value, or to nil.
type fieldSet map[string]fieldSet

var (
	keystoreFields = fieldSet{
		"name":        nil,
		"description": nil,
		"keyStoreEnvironmentList": {
			"environmentName": nil, "file": nil, "password": nil, "alias": nil, "keyStoreType": nil,
		},
	}
	mtlsFields = fieldSet{
		"enabled": nil, "keyStoreId": nil, "trustStoreId": nil, "supportedProtocolList": nil, "hostnameVerifierType": nil,
	}
)

// decodeBody decodes a JSON object into v, refusing members not in fields.
// encoding/json alone would match member names case-insensitively, letting a
// client's "keyStoreID" through where APIOps would not know it.
func decodeBody(body []byte, v any, fields fieldSet) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("Request body is empty; a JSON object is required")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return invalidJSON(err)
	}
	if err := fields.check(obj, ""); err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return invalidJSON(err)
	}
	return nil
}

// check reports the first unknown member, in name order so the answer is stable.
func (fs fieldSet) check(obj map[string]json.RawMessage, prefix string) *apiError {
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		nested, ok := fs[name]
		if !ok {
			return badRequest("Invalid request body: unknown field %q", prefix+name)
		}
		var items []map[string]json.RawMessage
		if nested == nil || json.Unmarshal(obj[name], &items) != nil {
			continue // not an array of objects: decoding into the struct reports it
		}
		for i, item := range items {
			if err := nested.check(item, fmt.Sprintf("%s%s[%d].", prefix, name, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// invalidJSON describes a decoding error without the simulator's Go type names.
func invalidJSON(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		return badRequest("Invalid request body: %v", err)
	}
	if typeErr.Field == "" {
		return badRequest("Invalid request body: a JSON object is required")
	}
	return badRequest("Invalid request body: %s must not be a JSON %s", typeErr.Field, typeErr.Value)
}

// rollout names the messages of a deployment or an undeployment.
type rollout struct {
	name string // "Deployment" or "Undeployment"
	done string // per environment on success
}

var (
	deployment   = rollout{name: "Deployment", done: "Deployed successfully"}
	undeployment = rollout{name: "Undeployment", done: "Undeployed successfully"}
)

type deploymentReply struct {
	Success          bool             `json:"success"`
	DeploymentResult deploymentResult `json:"deploymentResult"`
}

type deploymentResult struct {
	Success            bool                `json:"success"`
	Message            string              `json:"message"`
	EnvironmentResults []environmentResult `json:"environmentResults"`
}

type environmentResult struct {
	EnvironmentName string `json:"environmentName"`
	Success         bool   `json:"success"`
	Message         string `json:"message"`
}

// report describes the automatic (un)deployment of a saved change to each of the
// project's environments, failing those in Faults.FailEnvironments. The caller
// holds s.mu.
func (s *Server) report(p *project, ro rollout) deploymentReply {
	res := deploymentResult{Success: true, EnvironmentResults: make([]environmentResult, len(p.environments))}
	for i, env := range p.environments {
		er := environmentResult{EnvironmentName: env, Success: true, Message: ro.done}
		if slices.Contains(s.faults.FailEnvironments, env) {
			er.Success, er.Message = false, "Gateway timeout"
			res.Success = false
		}
		res.EnvironmentResults[i] = er
	}
	res.Message = ro.name + " completed successfully"
	if !res.Success {
		res.Message = ro.name + " completed with errors"
	}
	return deploymentReply{Success: true, DeploymentResult: res}
}
