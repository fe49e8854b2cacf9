package messages

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
)

// A CommandType describes one kind of command: the subject token that names it, the
// APIOps call it becomes and the resource it changes. Types lists them all; adding a
// command type is one entry there plus its params struct.
//
// The params struct's tags drive decoding, validation, the request and the JSON Schema:
//   - json: the APIOps field name; a field without omitempty is required.
//   - jsonschema: enum=..., maxLength=..., minItems=... are enforced by Decode too.
//   - apiops:"path": the value fills the {name} placeholder of Path and must be a valid
//     path name; apiops:"query": sent as a query parameter; apiops:"base64": valid
//     standard base64; apiops:"resource": the field that names the resource (see
//     ResourceKey); apiops:"keystore-id=<member>": the field names a keystore whose id
//     the request also carries in body member <member> (see APIRequest.KeystoreIDs).
//     Every other field goes into the JSON request body.
type CommandType struct {
	// Name is the subject's <type>, e.g. "credential.truststore.set".
	Name string
	// Method and Path are the APIOps call; Path holds {project} and {<json name>}
	// placeholders, each replaced by one percent-escaped segment.
	Method string
	Path   string
	// Resource is the kind of resource the command changes: "credential", "keystore"
	// or "apiProxy". Commands for the same resource run one at a time, in order.
	Resource string
	// Summary says in a few words what the command does.
	Summary string
	// Multipart: the request body is multipart/form-data (see APIRequest), not JSON.
	Multipart bool
	// Verifies: the command changes nothing. It reads APIOps until what it checks holds
	// or its deadline passes (the worker's verifier runs it); Method and Path name its
	// first read.
	Verifies bool

	params reflect.Type
}

func commandType[P any](name, method, path, resource, summary string) CommandType {
	return CommandType{Name: name, Method: method, Path: path, Resource: resource, Summary: summary, params: reflect.TypeFor[P]()}
}

// multipartType is a commandType whose request is a multipart form.
func multipartType[P any](name, method, path, resource, summary string) CommandType {
	ct := commandType[P](name, method, path, resource, summary)
	ct.Multipart = true
	return ct
}

// verifyType is a commandType that reads and checks rather than changes.
func verifyType[P any](name, path, resource, summary string) CommandType {
	ct := commandType[P](name, http.MethodGet, path, resource, summary)
	ct.Verifies = true
	return ct
}

var commandTypes = []CommandType{
	commandType[CredentialKeystoreSet]("credential.keystore.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/keystore/{keystoreName}/", "credential",
		"Assign a keystore to a credential, replacing the previous one."),
	commandType[CredentialKeystoreRemove]("credential.keystore.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/keystore/", "credential",
		"Remove a credential's keystore."),
	commandType[CredentialTruststoreSet]("credential.truststore.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/truststore/{keystoreName}/", "credential",
		"Assign a truststore to a credential, replacing the previous one."),
	commandType[CredentialTruststoreRemove]("credential.truststore.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/truststore/", "credential",
		"Remove a credential's truststore."),
	commandType[CredentialPrivateKeySet]("credential.privatekey.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/privateKey/{keyName}/", "credential",
		"Assign a private key to a credential, replacing the previous one."),
	commandType[CredentialPrivateKeyRemove]("credential.privatekey.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/privateKey/", "credential",
		"Remove a credential's private key."),
	commandType[CredentialPublicKeySet]("credential.publickey.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/publicKey/{keyName}/", "credential",
		"Assign a public key to a credential, replacing the previous one."),
	commandType[CredentialPublicKeyRemove]("credential.publickey.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/publicKey/", "credential",
		"Remove a credential's public key."),
	commandType[CredentialSecretKeySet]("credential.secretkey.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/secretKey/{secretKeyName}/", "credential",
		"Assign a secret key to a credential, replacing the previous one."),
	commandType[CredentialSecretKeyRemove]("credential.secretkey.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/secretKey/", "credential",
		"Remove a credential's secret key."),
	commandType[CredentialCertificateSet]("credential.certificate.set", http.MethodPut,
		"/apiops/projects/{project}/credentials/{username}/certificate/{certificateName}/", "credential",
		"Assign a certificate to a credential, replacing the previous one."),
	commandType[CredentialCertificateRemove]("credential.certificate.remove", http.MethodDelete,
		"/apiops/projects/{project}/credentials/{username}/certificate/", "credential",
		"Remove a credential's certificate."),
	commandType[KeystoreCreate]("keystore.create", http.MethodPost,
		"/apiops/projects/{project}/keystores/", "keystore",
		"Create a keystore with one file per environment."),
	commandType[KeystoreUpdate]("keystore.update", http.MethodPut,
		"/apiops/projects/{project}/keystores/{keystoreName}/", "keystore",
		"Change a keystore: rename, describe, or replace environment files."),
	commandType[KeystoreDelete]("keystore.delete", http.MethodDelete,
		"/apiops/projects/{project}/keystores/{keystoreName}/", "keystore",
		"Delete a keystore."),
	commandType[ProxyMTLSUpdate]("proxy.mtls.update", http.MethodPatch,
		"/apiops/projects/{project}/apiProxies/{apiProxyName}/settings/mtls/", "apiProxy",
		"Change an API proxy's mTLS settings; omitted fields stay as they are."),
	commandType[ProxyDeploy]("proxy.deploy", http.MethodPost,
		"/apiops/projects/{project}/apiProxies/{apiProxyName}/environments/{environmentName}/", "apiProxy",
		"Deploy an API proxy's saved settings to one environment."),
	commandType[ProxyUndeploy]("proxy.undeploy", http.MethodDelete,
		"/apiops/projects/{project}/apiProxies/{apiProxyName}/environments/{environmentName}/", "apiProxy",
		"Undeploy an API proxy from one environment."),
	commandType[ProxyRollback]("proxy.rollback", http.MethodPost,
		"/apiops/projects/{project}/apiProxies/{apiProxyName}/{revision}/rollback/", "apiProxy",
		"Roll an API proxy back to a revision in one environment."),
	verifyType[ProxyVerify]("proxy.verify",
		"/apiops/projects/{project}/apiProxies/{apiProxyName}/", "apiProxy",
		"Wait until an API proxy's latest revision is live on every pod of the named environments, or fail at the deadline."),
	commandType[KeyCreate]("key.create", http.MethodPost,
		"/apiops/projects/{project}/keys/", "key",
		"Create a key (private, public or secret key, or certificate) with content per environment."),
	commandType[KeyUpdate]("key.update", http.MethodPut,
		"/apiops/projects/{project}/keys/{keyName}/", "key",
		"Change a key: rename, describe, or replace its environments' content."),
	commandType[KeyDelete]("key.delete", http.MethodDelete,
		"/apiops/projects/{project}/keys/{keyName}/", "key",
		"Delete a key."),
	multipartType[CertificateCreate]("certificate.create", http.MethodPost,
		"/apiops/projects/{project}/certificates/", "certificate",
		"Upload a PEM certificate for the named environments."),
	multipartType[CertificateUpdate]("certificate.update", http.MethodPut,
		"/apiops/projects/{project}/certificates/{certificateName}/", "certificate",
		"Replace a certificate's PEM, description or environments."),
	commandType[CertificateDelete]("certificate.delete", http.MethodDelete,
		"/apiops/projects/{project}/certificates/{certificateName}/", "certificate",
		"Delete a certificate."),
}

var (
	typesByName   = make(map[string]CommandType, len(commandTypes))
	typesByParams = make(map[reflect.Type]CommandType, len(commandTypes))
)

func init() {
	for _, ct := range commandTypes {
		checkCommandType(ct)
		typesByName[ct.Name] = ct
		typesByParams[ct.params] = ct
	}
}

// Types returns every command type, in a stable order.
func Types() []CommandType { return append([]CommandType(nil), commandTypes...) }

// LookupType returns the command type named by a subject's <type>.
func LookupType(name string) (CommandType, bool) {
	ct, ok := typesByName[name]
	return ct, ok
}

// TypeOf returns the command type whose params struct params is (or points to).
func TypeOf(params Params) (CommandType, bool) {
	t := reflect.TypeOf(params)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	ct, ok := typesByParams[t]
	return ct, ok
}

// NewParams returns a pointer to a zero params struct of the type, e.g. *KeystoreCreate.
func (ct CommandType) NewParams() Params { return reflect.New(ct.params).Interface() }

// ParamsType is the params struct's type, for schema generators.
func (ct CommandType) ParamsType() reflect.Type { return ct.params }

// checkCommandType catches a malformed table entry at start-up rather than at the
// first command of that type.
func checkCommandType(ct CommandType) {
	info := structInfoFor(ct.params)
	for _, seg := range strings.Split(strings.Trim(ct.Path, "/"), "/") {
		name, ok := strings.CutPrefix(seg, "{")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, "}")
		if f, ok := info.byName[name]; name != "project" && (!ok || !f.path) {
			panic(fmt.Sprintf("messages: %s: path placeholder {%s} has no apiops:\"path\" field", ct.Name, name))
		}
	}
	if info.resource < 0 {
		panic(fmt.Sprintf("messages: %s: no apiops:\"resource\" field", ct.Name))
	}
	for _, f := range info.fields {
		if target, ok := info.byName[f.keystoreIDField]; f.keystoreIDField != "" && (!ok || target.path || target.query) {
			panic(fmt.Sprintf("messages: %s: %s: keystore-id names %q, which is no body field", ct.Name, f.name, f.keystoreIDField))
		}
	}
}

// Params is a pointer to one of the params structs below, e.g. *KeystoreCreate.
type Params = any

// crossFieldValidator is implemented by params with rules that tie fields together.
type crossFieldValidator interface{ validate() *Error }

// warner is implemented by params that can be valid yet unwise.
type warner interface{ warnings() []string }

// deployer is implemented by params that can ask APIOps to deploy what they change.
type deployer interface{ deployTargets() []string }

// CredentialKeystoreSet assigns keystore KeystoreName to credential Username.
type CredentialKeystoreSet struct {
	Username     string `json:"username" apiops:"path,resource"`
	KeystoreName string `json:"keystoreName" apiops:"path"`
}

// CredentialKeystoreRemove removes credential Username's keystore.
type CredentialKeystoreRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// CredentialTruststoreSet assigns truststore KeystoreName to credential Username.
type CredentialTruststoreSet struct {
	Username     string `json:"username" apiops:"path,resource"`
	KeystoreName string `json:"keystoreName" apiops:"path"`
}

// CredentialTruststoreRemove removes credential Username's truststore.
type CredentialTruststoreRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// CredentialPrivateKeySet assigns private key KeyName to credential Username.
type CredentialPrivateKeySet struct {
	Username string `json:"username" apiops:"path,resource"`
	KeyName  string `json:"keyName" apiops:"path"`
}

// CredentialPrivateKeyRemove removes credential Username's private key.
type CredentialPrivateKeyRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// CredentialPublicKeySet assigns public key KeyName to credential Username.
type CredentialPublicKeySet struct {
	Username string `json:"username" apiops:"path,resource"`
	KeyName  string `json:"keyName" apiops:"path"`
}

// CredentialPublicKeyRemove removes credential Username's public key.
type CredentialPublicKeyRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// CredentialSecretKeySet assigns secret key SecretKeyName to credential Username.
type CredentialSecretKeySet struct {
	Username      string `json:"username" apiops:"path,resource"`
	SecretKeyName string `json:"secretKeyName" apiops:"path"`
}

// CredentialSecretKeyRemove removes credential Username's secret key.
type CredentialSecretKeyRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// CredentialCertificateSet assigns certificate CertificateName to credential Username.
type CredentialCertificateSet struct {
	Username        string `json:"username" apiops:"path,resource"`
	CertificateName string `json:"certificateName" apiops:"path"`
}

// CredentialCertificateRemove removes credential Username's certificate.
type CredentialCertificateRemove struct {
	Username string `json:"username" apiops:"path,resource"`
}

// KeyStoreEnvironment is one environment's keystore file.
type KeyStoreEnvironment struct {
	EnvironmentName string `json:"environmentName" jsonschema:"maxLength=255"`
	File            Secret `json:"file" apiops:"base64" jsonschema:"description=the keystore file's bytes in standard base64"`
	Password        Secret `json:"password"`
	Alias           string `json:"alias,omitempty"`
	KeyStoreType    string `json:"keyStoreType" jsonschema:"enum=JKS,enum=PKCS12"`
}

// KeystoreCreate creates keystore Name.
type KeystoreCreate struct {
	Name                    string                `json:"name" apiops:"resource" jsonschema:"maxLength=255"`
	Description             *string               `json:"description,omitempty"`
	KeyStoreEnvironmentList []KeyStoreEnvironment `json:"keyStoreEnvironmentList" jsonschema:"minItems=1"`
}

// KeystoreUpdate changes keystore KeystoreName; fields left nil stay as they are.
type KeystoreUpdate struct {
	KeystoreName            string                `json:"keystoreName" apiops:"path,resource"`
	JWKUpdateAction         *string               `json:"jwkUpdateAction,omitempty" apiops:"query" jsonschema:"enum=NULLIFY,enum=UPDATE"`
	UpdateScope             *string               `json:"updateScope,omitempty" apiops:"query" jsonschema:"enum=SAME_PROJECT,enum=ALL_PROJECTS"`
	Name                    *string               `json:"name,omitempty" jsonschema:"maxLength=255"`
	Description             *string               `json:"description,omitempty"`
	KeyStoreEnvironmentList []KeyStoreEnvironment `json:"keyStoreEnvironmentList,omitempty"`
}

// KeystoreDelete deletes keystore KeystoreName.
type KeystoreDelete struct {
	KeystoreName    string  `json:"keystoreName" apiops:"path,resource"`
	JWKDeleteAction *string `json:"jwkDeleteAction,omitempty" apiops:"query" jsonschema:"enum=NULLIFY,enum=DELETE"`
}

// ProxyMTLSUpdate changes API proxy APIProxyName's mTLS settings; fields left nil stay
// as they are. An empty, non-nil SupportedProtocolList allows every protocol.
//
// A keystore is named by id or by name, not both. Servers of one documented kind take
// ids and of the other names (docs/design/apiops-dialects.md); for a name the request
// carries the name and, where APIOps tells it, the id too, so both kinds understand it.
// The empty name clears the setting on both kinds (its id is sent empty too).
type ProxyMTLSUpdate struct {
	APIProxyName                    string   `json:"apiProxyName" apiops:"path,resource"`
	Enabled                         *bool    `json:"enabled,omitempty"`
	KeyStoreID                      *string  `json:"keyStoreId,omitempty"`
	KeyStoreName                    *string  `json:"keyStoreName,omitempty" apiops:"keystore-id=keyStoreId" jsonschema:"maxLength=255"`
	TrustStoreID                    *string  `json:"trustStoreId,omitempty"`
	TrustStoreName                  *string  `json:"trustStoreName,omitempty" apiops:"keystore-id=trustStoreId" jsonschema:"maxLength=255"`
	SupportedProtocolList           []string `json:"supportedProtocolList,omitempty" jsonschema:"enum=TLS_1_3,enum=TLS_1_2,enum=TLS_1_1,enum=TLS_1_0,enum=SSL_3_0"`
	HostnameVerifierType            *string  `json:"hostnameVerifierType,omitempty" jsonschema:"enum=NOOP,enum=DEFAULT,enum=STRICT,enum=BROWSER_COMPAT"`
	DisableSSLValidation            *bool    `json:"disableSslValidation,omitempty"`
	Deploy                          *bool    `json:"deploy,omitempty"`
	DeployTargetEnvironmentNameList []string `json:"deployTargetEnvironmentNameList,omitempty"`
}

func (p *KeystoreUpdate) validate() *Error {
	if p.UpdateScope != nil && (p.JWKUpdateAction == nil || *p.JWKUpdateAction != "UPDATE") {
		return invalid("params.updateScope", "is allowed only with jwkUpdateAction UPDATE")
	}
	if p.JWKUpdateAction == nil && p.Name == nil && p.Description == nil && p.KeyStoreEnvironmentList == nil {
		return invalid("params", "must change something: set name, description, keyStoreEnvironmentList or jwkUpdateAction")
	}
	return nil
}

func (p *ProxyMTLSUpdate) validate() *Error {
	if p.Enabled == nil && p.KeyStoreID == nil && p.KeyStoreName == nil && p.TrustStoreID == nil && p.TrustStoreName == nil &&
		p.SupportedProtocolList == nil && p.HostnameVerifierType == nil && p.DisableSSLValidation == nil {
		return invalid("params", "must set at least one mTLS setting")
	}
	if p.KeyStoreID != nil && p.KeyStoreName != nil {
		return invalid("params.keyStoreName", "is not allowed with keyStoreId: name the keystore one way")
	}
	if p.TrustStoreID != nil && p.TrustStoreName != nil {
		return invalid("params.trustStoreName", "is not allowed with trustStoreId: name the truststore one way")
	}
	for _, ref := range []struct {
		field string
		value *string
	}{{"params.keyStoreName", p.KeyStoreName}, {"params.trustStoreName", p.TrustStoreName}} {
		if ref.value != nil && *ref.value != "" { // "" clears the setting
			if problem := checkName(*ref.value); problem != "" {
				return invalid(ref.field, problem)
			}
		}
	}
	if p.Enabled != nil && *p.Enabled && isBlank(p.KeyStoreID) && isBlank(p.KeyStoreName) {
		return invalid("params.keyStoreId", "(or keyStoreName) is required when enabled is true")
	}
	deploy := p.Deploy != nil && *p.Deploy
	switch {
	case deploy && len(p.DeployTargetEnvironmentNameList) == 0:
		return invalid("params.deployTargetEnvironmentNameList", "is required when deploy is true")
	case !deploy && p.DeployTargetEnvironmentNameList != nil:
		return invalid("params.deployTargetEnvironmentNameList", "is allowed only with deploy true")
	}
	return checkNames("params.deployTargetEnvironmentNameList[%d]", p.DeployTargetEnvironmentNameList, false)
}

func isBlank(s *string) bool { return s == nil || *s == "" }

func (p *ProxyMTLSUpdate) deployTargets() []string {
	if p.Deploy == nil || !*p.Deploy {
		return nil
	}
	return p.DeployTargetEnvironmentNameList
}

func (p *ProxyMTLSUpdate) warnings() []string {
	var w []string
	if p.HostnameVerifierType != nil && *p.HostnameVerifierType == "NOOP" {
		w = append(w, "hostnameVerifierType NOOP disables hostname verification of the backend's certificate")
	}
	if p.DisableSSLValidation != nil && *p.DisableSSLValidation {
		w = append(w, "disableSslValidation true disables verification of the backend's certificate")
	}
	return w
}
