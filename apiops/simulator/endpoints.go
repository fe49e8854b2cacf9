package simulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// adminProject is the project whose keystores, keys and certificates every
// project may use.
const adminProject = "admin"

var (
	keystoreTypes     = []string{"JKS", "PKCS12"}
	tlsProtocols      = []string{"TLS_1_3", "TLS_1_2", "TLS_1_1", "TLS_1_0", "SSL_3_0"}
	hostnameVerifiers = []string{"NOOP", "DEFAULT", "STRICT", "BROWSER_COMPAT"}
)

// request is what an endpoint is given: the request, its body, already read,
// and the dialect it is answered in, which decides how the mTLS PATCH names
// keystores.
type request struct {
	*http.Request
	body    []byte
	dialect Dialect
}

// handler executes one endpoint. It returns what it did or the error.
type handler func(req request) (outcome, *apiError)

// slot is one kind of credential secret assignment; the kinds differ only in
// these details.
type slot struct {
	segment string // path segment after credentials/{username}/
	param   string // wildcard naming the assigned item
	noun    string // the item in the seed dialect's "has no ... assigned"
	title   string // the item in today's "does not have a ... assigned"
	// notFound is the description when the item does not exist.
	notFound string
	field    func(*CredentialState) *string
	exists   func(p *project, name string) bool
}

var slots = []slot{
	{
		segment:  "keystore",
		param:    "keystoreName",
		noun:     "keystore",
		title:    "Keystore",
		notFound: "Keystore (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.Keystore },
		exists:   hasKeystore,
	},
	{
		segment:  "truststore",
		param:    "keystoreName",
		noun:     "truststore",
		title:    "Truststore",
		notFound: "Truststore (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.Truststore },
		exists:   hasKeystore,
	},
	{
		segment:  "privateKey",
		param:    "keyName",
		noun:     "private key",
		title:    "Private Key",
		notFound: "Key (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.PrivateKey },
		exists:   hasKey("PRIVATE_KEY"),
	},
	{
		segment:  "publicKey",
		param:    "keyName",
		noun:     "public key",
		title:    "Public Key",
		notFound: "Key (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.PublicKey },
		exists:   hasKey("PUBLIC_KEY"),
	},
	{
		segment:  "secretKey",
		param:    "secretKeyName",
		noun:     "secret key",
		title:    "Secret Key",
		notFound: "Secret Key (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.SecretKey },
		exists:   hasKey("SECRET_KEY"),
	},
	{
		segment:  "certificate",
		param:    "certificateName",
		noun:     "certificate",
		title:    "Certificate",
		notFound: "Certificate (name: %s) is not found!",
		field:    func(c *CredentialState) *string { return &c.Certificate },
		exists:   hasCertificate,
	},
}

func hasKeystore(p *project, name string) bool {
	_, ok := p.keystores[name]
	return ok
}

func hasKey(keyType string) func(p *project, name string) bool {
	return func(p *project, name string) bool {
		k, ok := p.keys[name]
		return ok && k.KeyType == keyType
	}
}

func hasCertificate(p *project, name string) bool {
	_, ok := p.certificates[name]
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
	s.mux.Handle("GET "+base+"keystores/{keystoreName}/{$}", s.endpoint(s.getKeystore))
	s.mux.Handle("PUT "+base+"keystores/{keystoreName}/{$}", s.endpoint(s.updateKeystore))
	s.mux.Handle("DELETE "+base+"keystores/{keystoreName}/{$}", s.endpoint(s.deleteKeystore))
	s.mux.Handle("GET "+base+"keystores/{$}", s.endpoint(s.listKeystores))
	s.mux.Handle("GET "+base+"keystores/{keystoreName}/export-file/{$}", s.endpoint(s.exportKeystore))
	s.mux.Handle("POST "+base+"keys/{$}", s.endpoint(s.createKey))
	s.mux.Handle("PUT "+base+"keys/{keyName}/{$}", s.endpoint(s.updateKey))
	s.mux.Handle("DELETE "+base+"keys/{keyName}/{$}", s.endpoint(s.deleteKey))
	s.mux.Handle("GET "+base+"certificates/{$}", s.endpoint(s.listCertificates))
	s.mux.Handle("POST "+base+"certificates/{$}", s.endpoint(s.createCertificate))
	s.mux.Handle("PUT "+base+"certificates/{certificateName}/{$}", s.endpoint(s.updateCertificate))
	s.mux.Handle("DELETE "+base+"certificates/{certificateName}/{$}", s.endpoint(s.deleteCertificate))
	s.mux.Handle("PATCH "+base+"apiProxies/{apiProxyName}/settings/mtls/{$}", s.endpoint(s.patchMTLS))
	environment := base + "apiProxies/{apiProxyName}/environments/{environmentName}/"
	s.mux.Handle("POST "+environment+"{$}", s.endpoint(s.deployToEnvironment))
	s.mux.Handle("DELETE "+environment+"{$}", s.endpoint(s.undeployFromEnvironment))
	s.mux.Handle("GET "+environment+"deploy-status/{$}", s.endpoint(s.getDeployStatus))
	s.mux.Handle("GET "+environment+"route-health/{$}", s.endpoint(s.getRouteHealth))
	s.mux.Handle("POST "+tokenPath, s.endpoint(s.issueToken))
	// The mux cannot hold this pattern beside the deployment's, as both match
	// apiProxies/x/environments/rollback/ and neither is more specific; it has
	// a mux of its own, which ServeHTTP asks first (so that path is a rollback
	// to revision "environments", refused as no number).
	s.rollbacks.Handle("POST "+base+"apiProxies/{apiProxyName}/{revision}/rollback/{$}", s.endpoint(s.rollback))
}

// endpoint adapts a handler to the mux, which hands it the request's exchange,
// and encodes what the handler did in the request's dialect.
func (s *Server) endpoint(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := w.(*exchange)
		o, err := h(request{Request: r, body: x.body, dialect: x.dialect})
		switch {
		case err != nil:
			s.fail(x.w, x.rec, x.dialect, err)
		case o.action == keystoreExport:
			s.setStatus(x.rec, http.StatusOK)
			x.w.Header().Set("Content-Type", "application/octet-stream")
			x.w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": o.fileName}))
			x.w.WriteHeader(http.StatusOK)
			_, _ = x.w.Write(o.file)
		default:
			s.respond(x.w, x.rec, http.StatusOK, x.dialect.success(o))
		}
	})
}

// project finds the request's project. The caller holds s.mu.
func (s *Server) project(r request) (*project, *apiError) {
	name := r.PathValue("projectName")
	p, ok := s.projects[name]
	if !ok {
		e := notFound("Project(%s) was not found or user does not have privilege to access it!", name)
		e.envelopeText = fmt.Sprintf("Project (%s) is not found!", name)
		return nil, e
	}
	return p, nil
}

// credential finds the request's project and credential. The caller holds s.mu.
func (s *Server) credential(r request) (*project, *CredentialState, *apiError) {
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
	return func(r request) (outcome, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, c, err := s.credential(r)
		if err != nil {
			return outcome{}, err
		}
		name := r.PathValue(sl.param)
		admin, hasAdmin := s.projects[adminProject]
		if !sl.exists(p, name) && !(hasAdmin && sl.exists(admin, name)) {
			return outcome{}, badRequest(sl.notFound, name)
		}
		if sl.segment == "keystore" {
			owner, ks := p, p.keystores[name]
			if ks == nil && hasAdmin {
				owner, ks = admin, admin.keystores[name]
			}
			if err := owner.refuseKeylessKeystore(ks, "the keystore of a credential"); err != nil {
				return outcome{}, err
			}
		}
		*sl.field(c) = name
		return outcome{
			action: credentialSecret,
			message: fmt.Sprintf("%s (name: %s) is assigned to Credential (username: %s).",
				sl.title, name, r.PathValue("username")),
			report: s.deploy(p, p.environments, deployment),
		}, nil
	}
}

func (s *Server) unassign(sl slot) handler {
	return func(r request) (outcome, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		p, c, err := s.credential(r)
		if err != nil {
			return outcome{}, err
		}
		username := r.PathValue("username")
		if *sl.field(c) == "" {
			e := badRequest("Credential (username: %s) has no %s assigned!", username, sl.noun)
			e.envelopeText = fmt.Sprintf("Credential (username: %s) does not have a %s assigned!", username, sl.title)
			return outcome{}, e
		}
		*sl.field(c) = ""
		return outcome{
			action:  credentialSecret,
			message: fmt.Sprintf("%s is removed from Credential (username: %s).", sl.title, username),
			report:  s.deploy(p, p.environments, redeployment),
		}, nil
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

func (s *Server) createKeystore(r request) (outcome, *apiError) {
	var in keystoreInput
	decodeErr := decodeBody(r.body, &in, keystoreFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return outcome{}, err
	}
	if decodeErr != nil {
		return outcome{}, decodeErr
	}
	if in.Name == nil || *in.Name == "" {
		return outcome{}, badRequest("name is required")
	}
	if in.Environments == nil {
		return outcome{}, badRequest("keyStoreEnvironmentList is required")
	}
	envs, err := p.keystoreEnvironments(in.Environments, s.now())
	if err != nil {
		return outcome{}, err
	}
	if hasKeystore(p, *in.Name) {
		return outcome{}, alreadyExists(*in.Name)
	}
	state := KeystoreState{Name: *in.Name, Environments: envs}
	if in.Description != nil {
		state.Description = *in.Description
	}
	ks := s.newKeystore(r.PathValue("projectName"), state)
	p.keystores[ks.Name] = ks
	return s.keystoreChanged(p, ks, "created", deployment), nil
}

func (s *Server) updateKeystore(r request) (outcome, *apiError) {
	var in keystoreInput
	decodeErr := decodeBody(r.body, &in, keystoreFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return outcome{}, err
	}
	if err := checkUpdateQuery(r.URL.Query()); err != nil {
		return outcome{}, err
	}
	if decodeErr != nil {
		return outcome{}, decodeErr
	}
	next := *ks
	if in.Name != nil {
		if *in.Name == "" {
			return outcome{}, badRequest("name must not be empty")
		}
		next.Name = *in.Name
	}
	if in.Description != nil {
		next.Description = *in.Description
	}
	if in.Environments != nil {
		if next.Environments, err = p.keystoreEnvironments(in.Environments, s.now()); err != nil {
			return outcome{}, err
		}
		next.seeded, next.lacksKey = "", nil // the list sent replaces the seed's content
	}
	if next.Name != ks.Name {
		if hasKeystore(p, next.Name) {
			return outcome{}, alreadyExists(next.Name)
		}
		delete(p.keystores, ks.Name)
	}
	p.keystores[next.Name] = &next
	return s.keystoreChanged(p, &next, "updated", deployment), nil
}

func (s *Server) deleteKeystore(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return outcome{}, err
	}
	if _, err := queryEnum(r.URL.Query(), "jwkDeleteAction", "NULLIFY", "DELETE"); err != nil {
		return outcome{}, err
	}
	delete(p.keystores, ks.Name)
	return s.keystoreChanged(p, ks, "deleted", undeployment), nil
}

func (s *Server) getKeystore(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return outcome{}, err
	}
	return outcome{action: keystoreRead, keystore: s.view(p, ks)}, nil
}

// listKeystores is the project's keystores, in name order, each as GET
// keystores/{keystoreName}/ shows it.
func (s *Server) listKeystores(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return outcome{}, err
	}
	views := make([]*keystoreView, 0, len(p.keystores))
	for _, name := range slices.Sorted(maps.Keys(p.keystores)) {
		views = append(views, s.view(p, p.keystores[name]))
	}
	return outcome{action: keystoreList, item: views}, nil
}

// exportKeystore answers the file of one environment of a keystore as it was
// stored (import-keystore-file.mdx's export-file), not JSON.
func (s *Server) exportKeystore(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ks, err := s.keystore(r)
	if err != nil {
		return outcome{}, err
	}
	env := r.URL.Query().Get("environmentName")
	switch {
	case env == "":
		return outcome{}, badRequest("environmentName is required")
	case !slices.Contains(p.environments, env):
		return outcome{}, badRequest("Environment (name: %s) was not found!", env)
	}
	p.keystoreContent(ks)
	i := slices.IndexFunc(ks.Environments, func(e KeystoreEnvironment) bool { return e.EnvironmentName == env })
	if i < 0 {
		return outcome{}, badRequest("Keystore (name: %s) has no file for Environment (name: %s)!", ks.Name, env)
	}
	e := ks.Environments[i]
	extension := ".p12"
	if e.KeyStoreType == "JKS" {
		extension = ".jks"
	}
	return outcome{action: keystoreExport, file: slices.Clone(e.File), fileName: ks.Name + "-" + env + extension}, nil
}

// keystoreChanged is the outcome of a keystore write: the keystore is
// (un)deployed to every environment of the project. The caller holds s.mu.
func (s *Server) keystoreChanged(p *project, ks *keystore, done string, ro rollout) outcome {
	return outcome{
		action:   keystoreChange,
		message:  fmt.Sprintf("Keystore (name: %s) is %s.", ks.Name, done),
		report:   s.deploy(p, p.environments, ro),
		keystore: s.view(p, ks),
	}
}

// view copies what answers may show of a keystore, giving one from the seed
// its content first. The caller holds s.mu.
func (s *Server) view(p *project, ks *keystore) *keystoreView {
	p.keystoreContent(ks)
	v := &keystoreView{
		id: ks.id, name: ks.Name, description: ks.Description, projectID: p.id,
		environments: make([]keystoreEnvironmentView, len(ks.Environments)),
	}
	for i, e := range ks.Environments {
		v.environments[i] = keystoreEnvironmentView{
			name:           e.EnvironmentName,
			id:             objectID("environment", e.EnvironmentName),
			alias:          e.Alias,
			keyStoreType:   e.KeyStoreType,
			sealedFile:     s.seal("keystore file", e.File),
			sealedPassword: s.seal("keystore password", []byte(e.Password)),
		}
	}
	return v
}

// keystore finds the request's project and keystore. The caller holds s.mu.
func (s *Server) keystore(r request) (*project, *keystore, *apiError) {
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

// keystoreEnvironments validates a keyStoreEnvironmentList against the project, its
// files as of now. The caller holds s.mu.
func (p *project) keystoreEnvironments(in []keystoreEnvironmentInput, now time.Time) ([]KeystoreEnvironment, *apiError) {
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
		if refusal := keystoreRefusal(file, e.KeyStoreType, e.Password, now); refusal != "" {
			return nil, badRequest("Invalid keystore file for environment %s: %s", env, refusal)
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
	Enabled                         *bool    `json:"enabled"`
	KeyStoreID                      *string  `json:"keyStoreId"`
	TrustStoreID                    *string  `json:"trustStoreId"`
	KeyStoreName                    *string  `json:"keyStoreName"`
	TrustStoreName                  *string  `json:"trustStoreName"`
	SupportedProtocolList           []string `json:"supportedProtocolList"`
	HostnameVerifierType            *string  `json:"hostnameVerifierType"`
	DisableSSLValidation            *bool    `json:"disableSslValidation"`
	Deploy                          bool     `json:"deploy"`
	DeployTargetEnvironmentNameList []string `json:"deployTargetEnvironmentNameList"`
}

func (s *Server) patchMTLS(r request) (outcome, *apiError) {
	var in mtlsInput
	decodeErr := decodeBody(r.body, &in, mtlsFields[r.dialect])
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
	// update-mtls-settings.mdx: AI proxies keep this under aiRouting, and
	// today's server refuses rather than silently ignoring the change.
	if px.settings.Type == "AI" {
		return outcome{}, badRequest("ApiProxy (name: %s) is of type AI; its mTLS settings are part of aiRouting, update them with Update AI Routing", name)
	}
	if decodeErr != nil {
		return outcome{}, decodeErr
	}
	merged, err := in.mergeOnto(px.settings.clone(), p, r.dialect)
	if err != nil {
		return outcome{}, err
	}
	targets, err := p.deployTargets(in)
	if err != nil {
		return outcome{}, err
	}
	px.settings = merged
	o := outcome{action: mtlsChange, message: fmt.Sprintf("mTLS settings of ApiProxy (name: %s) are updated.", name)}
	if in.Deploy {
		o.report = s.deployProxy(p, px, targets)
	}
	return o, nil
}

// mergeOnto applies the body to m. The caller holds s.mu.
func (in mtlsInput) mergeOnto(m MTLSSettings, p *project, d Dialect) (MTLSSettings, *apiError) {
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
	if err := p.setStore(d, "KeyStore", in.KeyStoreID, in.KeyStoreName, &m.KeyStoreID, &m.KeyStoreName); err != nil {
		return m, err
	}
	if err := p.setStore(d, "TrustStore", in.TrustStoreID, in.TrustStoreName, &m.TrustStoreID, &m.TrustStoreName); err != nil {
		return m, err
	}
	if in.Enabled != nil {
		m.Enabled = *in.Enabled
	}
	if in.SupportedProtocolList != nil {
		m.SupportedProtocolList = slices.Clone(in.SupportedProtocolList)
	}
	if in.HostnameVerifierType != nil {
		m.HostnameVerifierType = *in.HostnameVerifierType
	}
	if in.DisableSSLValidation != nil {
		m.DisableSSLValidation = *in.DisableSSLValidation
	}
	if m.Enabled && m.KeyStoreID == "" && m.KeyStoreName == "" {
		if d.namesKeystores() {
			return m, badRequest("KeyStore name is required when mTLS is enabled")
		}
		return m, badRequest("KeyStore ID is required when mTLS is enabled")
	}
	return m, nil
}

// setStore applies one keystore reference of the body to a proxy's id and
// name, reading only the field the dialect's server reads; the other is
// ignored, as Spring ignores properties its DTO lacks. The seed dialect takes
// any id unchecked, as the pages it comes from describe no check, so old
// fixtures that pass a name as the id keep working. An empty value clears the
// reference. The caller holds s.mu.
func (p *project) setStore(d Dialect, label string, byID, byName, id, name *string) *apiError {
	switch {
	case d == DialectSeed:
		if byID == nil {
			return nil
		}
		*id, *name = *byID, ""
		if ks := p.keystoreWithID(*byID); ks != nil {
			*name = ks.Name
			return p.refuseKeylessMTLSKeystore(label, ks)
		}
		return nil
	case d.namesKeystores():
		if byName == nil {
			return nil
		}
		if *byName == "" {
			*id, *name = "", ""
			return nil
		}
		ks, ok := p.keystores[*byName]
		if !ok {
			return badRequest("%s (name: %s) is not found!", label, *byName)
		}
		*id, *name = ks.id, ks.Name
		return p.refuseKeylessMTLSKeystore(label, ks)
	default:
		if byID == nil {
			return nil
		}
		if *byID == "" {
			*id, *name = "", ""
			return nil
		}
		ks := p.keystoreWithID(*byID)
		if ks == nil {
			return badRequest("%s (id: %s) is not found!", label, *byID)
		}
		*id, *name = ks.id, ks.Name
		return p.refuseKeylessMTLSKeystore(label, ks)
	}
}

// keystoreWithID finds a keystore of the project by id, nil when there is
// none. A project has a handful of keystores, so a scan is cheaper than
// keeping a second index in step. The caller holds s.mu.
func (p *project) keystoreWithID(id string) *keystore {
	for _, ks := range p.keystores {
		if ks.id == id {
			return ks
		}
	}
	return nil
}

// deployTargets checks where a PATCH asks to be deployed; nil when it does not
// ask. The caller holds s.mu.
func (p *project) deployTargets(in mtlsInput) ([]string, *apiError) {
	if !in.Deploy {
		return nil, nil
	}
	envs := in.DeployTargetEnvironmentNameList
	if len(envs) == 0 {
		return nil, badRequest("deployTargetEnvironmentNameList is required when deploy is true")
	}
	for i, env := range envs {
		switch {
		case env == "":
			return nil, badRequest("deployTargetEnvironmentNameList[%d] must not be empty", i)
		case !slices.Contains(p.environments, env):
			return nil, badRequest("Environment (name: %s) was not found!", env)
		case slices.Contains(envs[:i], env):
			return nil, badRequest("Environment (name: %s) is listed more than once in deployTargetEnvironmentNameList", env)
		}
	}
	return slices.Clone(envs), nil
}

// fieldSet lists the members an object has, by exact name. A member maps to the
// fieldSet of the objects in its array value, or to nil.
type fieldSet map[string]fieldSet

var (
	keystoreFields = fieldSet{
		"name":        nil,
		"description": nil,
		"keyStoreEnvironmentList": {
			"environmentName": nil, "file": nil, "password": nil, "alias": nil, "keyStoreType": nil,
		},
	}
	// mtlsFields are the members each dialect's PATCH knows: the page we started from
	// (APIOPS.md) and openapi.yaml's RoutingMTLSSettingsDTO have no deploy or
	// disableSslValidation, so a server of those kinds ignores them; today's page
	// (update-mtls-settings.mdx) has them. The other keystore reference is known to
	// every dialect, for setStore to ignore: one body serves both kinds of server.
	mtlsFields = map[Dialect]fieldSet{
		DialectSeed:    mtlsBase,
		DialectOpenAPI: mtlsBase,
		DialectDocs:    mtlsDeploying,
		DialectMixed:   mtlsDeploying,
	}
	mtlsBase = fieldSet{
		"enabled": nil, "keyStoreId": nil, "trustStoreId": nil, "keyStoreName": nil, "trustStoreName": nil,
		"supportedProtocolList": nil, "hostnameVerifierType": nil,
	}
	mtlsDeploying = func() fieldSet {
		fs := fieldSet{"disableSslValidation": nil, "deploy": nil, "deployTargetEnvironmentNameList": nil}
		maps.Copy(fs, mtlsBase)
		return fs
	}()
)

// decodeBody decodes a JSON object into v, dropping members not in fields, as
// Spring's JSON reader ignores properties it does not know. They are dropped by
// exact name before decoding because encoding/json alone would match names
// case-insensitively, taking a client's "keyStoreID" for "keyStoreId", which
// APIOps would not.
func decodeBody(body []byte, v any, fields fieldSet) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("Request body is empty; a JSON object is required")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return invalidJSON(err)
	}
	known, err := json.Marshal(fields.filter(obj))
	if err != nil {
		return invalidJSON(err)
	}
	if err := json.Unmarshal(known, v); err != nil {
		return invalidJSON(err)
	}
	return nil
}

// filter drops the members of obj that fs does not know, in the objects of
// nested arrays too, and returns obj.
func (fs fieldSet) filter(obj map[string]json.RawMessage) map[string]json.RawMessage {
	for name, raw := range obj {
		nested, ok := fs[name]
		if !ok {
			delete(obj, name)
			continue
		}
		var items []map[string]json.RawMessage
		if nested == nil || json.Unmarshal(raw, &items) != nil {
			continue // not an array of objects: decoding into the struct reports it
		}
		for _, item := range items {
			nested.filter(item)
		}
		if filtered, err := json.Marshal(items); err == nil {
			obj[name] = filtered
		}
	}
	return obj
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

// deploy reports the (un)deployment of a saved change to envs, failing those
// in Faults.FailEnvironments. The caller holds s.mu.
func (s *Server) deploy(p *project, envs []string, ro rollout) *deploymentReport {
	r := &deploymentReport{rollout: ro, environments: make([]environmentOutcome, len(envs))}
	for i, env := range envs {
		r.environments[i] = environmentOutcome{
			name:  env,
			index: slices.Index(p.environments, env),
			ok:    !slices.Contains(s.faults.FailEnvironments, env),
		}
	}
	return r
}
