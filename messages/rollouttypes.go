package messages

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
)

// This file holds the params of the commands that deploy, roll back and verify API
// proxies, and of those that manage keys and certificates. Their table entries are in
// types.go.

// ProxyDeploy deploys API proxy APIProxyName's saved settings to EnvironmentName.
type ProxyDeploy struct {
	APIProxyName    string `json:"apiProxyName" apiops:"path,resource"`
	EnvironmentName string `json:"environmentName" apiops:"path"`
}

// ProxyUndeploy undeploys API proxy APIProxyName from EnvironmentName.
type ProxyUndeploy struct {
	APIProxyName    string `json:"apiProxyName" apiops:"path,resource"`
	EnvironmentName string `json:"environmentName" apiops:"path"`
}

// ProxyRollback rolls API proxy APIProxyName back to Revision in EnvironmentName.
//
// In a plan's onFailure, Revision may be left out: the worker then rolls back to the
// revision that the plan's first proxy.verify of this proxy in this environment saw,
// before the plan deployed there (docs/design/verified-rotation.md). Anywhere else it
// is required.
type ProxyRollback struct {
	APIProxyName    string `json:"apiProxyName" apiops:"path,resource"`
	Revision        int    `json:"revision,omitempty" apiops:"path" jsonschema:"minimum=1,description=the revision to roll back to; in a plan's onFailure it may be left out: the revision the plan's first verify of the proxy there saw"`
	EnvironmentName string `json:"environmentName" apiops:"query" jsonschema:"maxLength=255"`
}

// MaxVerifyTimeout bounds a proxy.verify's deadline.
const MaxVerifyTimeout = 3600

// DefaultVerifyTimeout is a proxy.verify's deadline, in seconds, when it names none.
const DefaultVerifyTimeout = 120

// ProxyVerify waits until API proxy APIProxyName runs its latest saved settings on
// every pod of each of EnvironmentNameList: deploy-status says deployed with no
// redeployRequired (unless Baseline), and route-health says every pod is active, on that revision, and
// nothing is inconsistent. It fails when TimeoutSeconds pass first. KeyStoreName and
// TrustStoreName also read back the keystore the plan set: it must exist and hold a
// file for each of the environments (APIOps offers no read of a proxy's mTLS
// settings; see docs/design/verified-rotation.md).
type ProxyVerify struct {
	APIProxyName        string   `json:"apiProxyName" apiops:"path,resource"`
	EnvironmentNameList []string `json:"environmentNameList" jsonschema:"minItems=1"`
	TimeoutSeconds      int      `json:"timeoutSeconds,omitempty" jsonschema:"minimum=1,maximum=3600,description=how long to wait for the route to be live; default 120"`
	KeyStoreName        *string  `json:"keyStoreName,omitempty" jsonschema:"maxLength=255"`
	TrustStoreName      *string  `json:"trustStoreName,omitempty" jsonschema:"maxLength=255"`
	// Baseline marks a verify before a change: the route must be live, but the
	// revision it runs may be behind the saved settings (later stages of a staged
	// rollout are), so redeployRequired does not fail it.
	Baseline bool `json:"baseline,omitempty" jsonschema:"description=a verify before a change: redeployRequired does not fail it"`
}

// Timeout is the verify's deadline in seconds, the default applied.
func (p *ProxyVerify) Timeout() int {
	if p.TimeoutSeconds == 0 {
		return DefaultVerifyTimeout
	}
	return p.TimeoutSeconds
}

func (p *ProxyVerify) validate() *Error {
	if p.TimeoutSeconds < 0 || p.TimeoutSeconds > MaxVerifyTimeout {
		return invalid("params.timeoutSeconds", fmt.Sprintf("must be from 1 to %d seconds", MaxVerifyTimeout))
	}
	if err := checkNames("params.environmentNameList[%d]", p.EnvironmentNameList, true); err != nil {
		return err
	}
	for _, ref := range []struct {
		field string
		value *string
	}{{"params.keyStoreName", p.KeyStoreName}, {"params.trustStoreName", p.TrustStoreName}} {
		if ref.value != nil {
			if problem := checkName(*ref.value); problem != "" {
				return invalid(ref.field, problem)
			}
		}
	}
	if p.Baseline && (p.KeyStoreName != nil || p.TrustStoreName != nil) {
		return invalid("params.baseline", "is a read before a change: it reads no keystore back (drop keyStoreName and trustStoreName)")
	}
	return nil
}

func (p *ProxyRollback) validate() *Error {
	if problem := checkName(p.EnvironmentName); problem != "" {
		return invalid("params.environmentName", problem)
	}
	if p.Revision < 0 {
		return invalid("params.revision", "must be 1 or more")
	}
	return nil
}

// checkNames checks each of a list of names (environments) as a path name, and, when
// unique, that none comes twice; field is the path of an item, with %d for its index.
func checkNames(field string, names []string, unique bool) *Error {
	seen := make(map[string]bool, len(names))
	for i, name := range names {
		if problem := checkName(name); problem != "" {
			return invalid(fmt.Sprintf(field, i), problem)
		}
		if unique && seen[name] {
			return invalid(fmt.Sprintf(field, i), fmt.Sprintf("names %q twice", name))
		}
		seen[name] = true
	}
	return nil
}

// resolvedByPlan is implemented by params that may leave something for the plan to
// fill in, in an onFailure step only.
type resolvedByPlan interface{ unresolved() *Error }

func (p *ProxyRollback) unresolved() *Error {
	if p.Revision == 0 {
		return invalid("params.revision", "is required (only a plan's onFailure step may leave it out, to roll back what the plan verified)")
	}
	return nil
}

// KeyEnvironment is one environment's content of a key.
type KeyEnvironment struct {
	EnvironmentName string `json:"environmentName" jsonschema:"maxLength=255"`
	Content         Secret `json:"content" jsonschema:"description=the key: PEM text for private and public keys and certificates"`
	Alias           string `json:"alias,omitempty"`
}

// KeyCreate creates key Name.
type KeyCreate struct {
	Name                         string           `json:"name" apiops:"resource" jsonschema:"maxLength=255"`
	Description                  *string          `json:"description,omitempty"`
	KeyType                      *string          `json:"keyType,omitempty" jsonschema:"enum=PRIVATE_KEY,enum=PUBLIC_KEY,enum=SECRET_KEY,enum=CERTIFICATE"`
	CryptoKeyInfoEnvironmentList []KeyEnvironment `json:"cryptoKeyInfoEnvironmentList" jsonschema:"minItems=1"`
}

// KeyUpdate changes key KeyName; fields left nil stay as they are. A list given
// replaces the stored one, so it names every environment the key keeps.
type KeyUpdate struct {
	KeyName                      string           `json:"keyName" apiops:"path,resource"`
	Name                         *string          `json:"name,omitempty" jsonschema:"maxLength=255"`
	Description                  *string          `json:"description,omitempty"`
	KeyType                      *string          `json:"keyType,omitempty" jsonschema:"enum=PRIVATE_KEY,enum=PUBLIC_KEY,enum=SECRET_KEY,enum=CERTIFICATE"`
	CryptoKeyInfoEnvironmentList []KeyEnvironment `json:"cryptoKeyInfoEnvironmentList,omitempty"`
}

// KeyDelete deletes key KeyName.
type KeyDelete struct {
	KeyName string `json:"keyName" apiops:"path,resource"`
}

func (p *KeyCreate) validate() *Error {
	return checkKeyEnvironments(p.KeyType, p.CryptoKeyInfoEnvironmentList)
}

func (p *KeyUpdate) validate() *Error {
	if p.Name == nil && p.Description == nil && p.KeyType == nil && p.CryptoKeyInfoEnvironmentList == nil {
		return invalid("params", "must change something: set name, description, keyType or cryptoKeyInfoEnvironmentList")
	}
	if p.CryptoKeyInfoEnvironmentList != nil && len(p.CryptoKeyInfoEnvironmentList) == 0 {
		return invalid("params.cryptoKeyInfoEnvironmentList", "must have at least 1 entry: the list replaces the key's environments")
	}
	return checkKeyEnvironments(p.KeyType, p.CryptoKeyInfoEnvironmentList)
}

// checkKeyEnvironments refuses an environment named twice and, for the PEM key
// types, content that is not PEM (opened secrets only: a sealed one is checked
// where it is opened).
func checkKeyEnvironments(keyType *string, list []KeyEnvironment) *Error {
	seen := map[string]bool{}
	for i, e := range list {
		field := fmt.Sprintf("params.cryptoKeyInfoEnvironmentList[%d]", i)
		if problem := checkName(e.EnvironmentName); problem != "" {
			return invalid(field+".environmentName", problem)
		}
		if seen[e.EnvironmentName] {
			return invalid(field+".environmentName", fmt.Sprintf("names %q twice", e.EnvironmentName))
		}
		seen[e.EnvironmentName] = true
		if e.Content.value == nil || keyType == nil || *keyType == "SECRET_KEY" {
			continue
		}
		if block, _ := pem.Decode([]byte(e.Content.Reveal())); block == nil {
			return invalid(field+".content", "must be PEM text for a "+*keyType+" (-----BEGIN ...-----)")
		}
	}
	return nil
}

// CertificateCreate uploads certificate Name. The request is a multipart form: the PEM
// goes as the file part pemEncodedFile, each environment as a field environmentList.
type CertificateCreate struct {
	Name            string   `json:"name" apiops:"resource" jsonschema:"maxLength=255"`
	Description     *string  `json:"description,omitempty"`
	PEMEncodedFile  string   `json:"pemEncodedFile" apiops:"base64,file" jsonschema:"description=the PEM file's bytes in standard base64"`
	EnvironmentList []string `json:"environmentList" jsonschema:"minItems=1"`
}

// CertificateUpdate changes certificate CertificateName; fields left empty stay as
// they are.
type CertificateUpdate struct {
	CertificateName string   `json:"certificateName" apiops:"path,resource"`
	Description     *string  `json:"description,omitempty"`
	PEMEncodedFile  string   `json:"pemEncodedFile,omitempty" apiops:"base64,file" jsonschema:"description=the PEM file's bytes in standard base64"`
	EnvironmentList []string `json:"environmentList,omitempty"`
}

// CertificateDelete deletes certificate CertificateName.
type CertificateDelete struct {
	CertificateName string `json:"certificateName" apiops:"path,resource"`
}

func (p *CertificateCreate) validate() *Error {
	return checkCertificateUpload(p.PEMEncodedFile, p.EnvironmentList)
}

func (p *CertificateUpdate) validate() *Error {
	if p.Description == nil && p.PEMEncodedFile == "" && p.EnvironmentList == nil {
		return invalid("params", "must change something: set description, pemEncodedFile or environmentList")
	}
	return checkCertificateUpload(p.PEMEncodedFile, p.EnvironmentList)
}

// checkCertificateUpload refuses a file that holds no PEM certificate, so that the
// mistake is named here rather than in APIOps's multipart error.
func checkCertificateUpload(file string, envs []string) *Error {
	if err := checkNames("params.environmentList[%d]", envs, false); err != nil {
		return err
	}
	if file == "" {
		return nil
	}
	data, err := base64.StdEncoding.DecodeString(file)
	if err != nil {
		return nil // the base64 rule names it
	}
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return invalid("params.pemEncodedFile", "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
		}
		if block.Type == "CERTIFICATE" {
			return nil
		}
	}
}

// checkRollbackBaselines: an onFailure proxy.rollback that leaves its revision out
// rolls back to what the plan's first proxy.verify of that proxy saw in that
// environment (worker/rollback.go), so such a verify must come before the plan's first
// step that changes what the proxy runs there; otherwise it would see the plan's own
// change.
func checkRollbackBaselines(p *Plan) *Error {
	for i, undo := range p.OnFailure {
		rb, ok := undo.Params.(*ProxyRollback)
		if !ok || rb.Revision != 0 {
			continue
		}
		if _, ok := p.RollbackBaseline(undo); !ok {
			return invalid(fmt.Sprintf("onFailure[%d].params.revision", i), fmt.Sprintf(
				"may be left out only when a proxy.verify of %s in %s comes before the plan's first deployment of %s there: the revision it sees is the one rolled back to",
				rb.APIProxyName, rb.EnvironmentName, rb.APIProxyName))
		}
	}
	return nil
}

// RollbackBaseline is the index of the step whose verify an onFailure proxy.rollback
// without a revision rolls back to: the plan's first proxy.verify of the rollback's
// proxy in its environment, when it comes before the first step that changes what the
// proxy runs there. ok is false when there is none (Decode refuses such a plan).
func (p *Plan) RollbackBaseline(rollback *Command) (step int, ok bool) {
	rb, isRollback := rollback.Params.(*ProxyRollback)
	if !isRollback {
		return 0, false
	}
	for i, s := range p.Steps {
		if s.ResourceKey() != rollback.ResourceKey() {
			continue
		}
		if v, isVerify := s.Params.(*ProxyVerify); isVerify && slices.Contains(v.EnvironmentNameList, rb.EnvironmentName) {
			return i, true
		}
		if deploysTo(s, rb.EnvironmentName) {
			return 0, false
		}
	}
	return 0, false
}

// deploysTo reports whether the step changes what its proxy runs in env: an mTLS
// change that deploys there, or a deploy, undeploy or rollback there. An mTLS change
// that does not deploy changes the saved settings only.
func deploysTo(s *Command, env string) bool {
	switch p := s.Params.(type) {
	case *ProxyMTLSUpdate:
		return slices.Contains(p.deployTargets(), env)
	case *ProxyDeploy:
		return p.EnvironmentName == env
	case *ProxyUndeploy:
		return p.EnvironmentName == env
	case *ProxyRollback:
		return p.EnvironmentName == env
	}
	return false
}
