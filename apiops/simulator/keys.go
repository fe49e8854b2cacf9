package simulator

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// KeyState is a key (keys-secrets: private, public and secret keys, and
// certificates held as keys) as the simulator holds it. Keys from the seed have
// a type and no content.
type KeyState struct {
	Name        string
	Description string
	// KeyType is PRIVATE_KEY, PUBLIC_KEY, SECRET_KEY or CERTIFICATE.
	KeyType      string
	Environments []KeyEnvironment
}

// KeyEnvironment is a key's content for one environment: PEM text, or any
// text for a secret key.
type KeyEnvironment struct {
	EnvironmentName string
	Content         string
	Alias           string
}

// Key reports a key as created or last updated.
func (s *Server) Key(projectName, name string) (KeyState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return KeyState{}, false
	}
	k, ok := p.keys[name]
	if !ok {
		return KeyState{}, false
	}
	out := *k
	out.Environments = slices.Clone(k.Environments)
	return out, true
}

// keyInput is the key create and update body; pointers tell an absent field
// from an empty one.
type keyInput struct {
	Name         *string               `json:"name"`
	Description  *string               `json:"description"`
	KeyType      *string               `json:"keyType"`
	Environments []keyEnvironmentInput `json:"cryptoKeyInfoEnvironmentList"`
}

type keyEnvironmentInput struct {
	EnvironmentName string `json:"environmentName"`
	Content         string `json:"content"`
	Alias           string `json:"alias"`
}

var keyFields = fieldSet{
	"name": nil, "description": nil, "keyType": nil,
	"cryptoKeyInfoEnvironmentList": {"environmentName": nil, "content": nil, "alias": nil},
}

func (s *Server) createKey(r request) (outcome, *apiError) {
	var in keyInput
	decodeErr := decodeBody(r.body, &in, keyFields)
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
		return outcome{}, badRequest("cryptoKeyInfoEnvironmentList is required")
	}
	envs, err := p.keyEnvironments(in.Environments)
	if err != nil {
		return outcome{}, err
	}
	keyType, err := keyTypeOf(in.KeyType, envs)
	if err != nil {
		return outcome{}, err
	}
	if _, taken := p.keys[*in.Name]; taken {
		return outcome{}, keyExists(*in.Name)
	}
	k := &KeyState{Name: *in.Name, KeyType: keyType, Environments: envs}
	if in.Description != nil {
		k.Description = *in.Description
	}
	p.keys[k.Name] = k
	return s.keyChanged(p, k, "created", deployment), nil
}

// updateKey changes the fields sent: a cryptoKeyInfoEnvironmentList replaces
// the stored one, as keystore updates do; the type is the one sent, else the
// one the new contents show, else the stored one, and every content must be
// of it.
func (s *Server) updateKey(r request) (outcome, *apiError) {
	var in keyInput
	decodeErr := decodeBody(r.body, &in, keyFields)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, k, err := s.projectKey(r)
	if err != nil {
		return outcome{}, err
	}
	if decodeErr != nil {
		return outcome{}, decodeErr
	}
	next := *k
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
		if next.Environments, err = p.keyEnvironments(in.Environments); err != nil {
			return outcome{}, err
		}
	}
	if in.KeyType != nil || in.Environments != nil {
		if next.KeyType, err = keyTypeOf(in.KeyType, next.Environments); err != nil {
			return outcome{}, err
		}
	}
	if next.Name != k.Name {
		if _, taken := p.keys[next.Name]; taken {
			return outcome{}, keyExists(next.Name)
		}
		delete(p.keys, k.Name)
	}
	p.keys[next.Name] = &next
	return s.keyChanged(p, &next, "updated", deployment), nil
}

func (s *Server) deleteKey(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, k, err := s.projectKey(r)
	if err != nil {
		return outcome{}, err
	}
	uses := func(c *CredentialState) bool {
		return c.PrivateKey == k.Name || c.PublicKey == k.Name || c.SecretKey == k.Name
	}
	if user := s.userOf(p, k.Name, uses, func(q *project) bool { _, ok := q.keys[k.Name]; return ok }); user != "" {
		return outcome{}, badRequest("Key (name: %s) is used by Credential (username: %s)! Remove it from the credential first.", k.Name, user)
	}
	delete(p.keys, k.Name)
	return s.keyChanged(p, k, "deleted", undeployment), nil
}

// projectKey finds the request's project and key. The caller holds s.mu.
func (s *Server) projectKey(r request) (*project, *KeyState, *apiError) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, err
	}
	name := r.PathValue("keyName")
	k, ok := p.keys[name]
	if !ok {
		return nil, nil, badRequest("Key (name: %s) is not found!", name)
	}
	return p, k, nil
}

func keyExists(name string) *apiError {
	return badRequest("Key (name: %s) is already exist! Try update operation if want to change its value.", name)
}

// keyChanged is the outcome of a key write, which like a keystore's is
// (un)deployed to every environment of the project. The caller holds s.mu.
func (s *Server) keyChanged(p *project, k *KeyState, done string, ro rollout) outcome {
	dto := keyDTO{
		Name: k.Name, Description: k.Description, KeyType: k.KeyType, ProjectID: p.id,
		Environments: make([]keyEnvironmentDTO, len(k.Environments)),
	}
	for i, e := range k.Environments {
		dto.Environments[i] = keyEnvironmentDTO{EnvironmentName: e.EnvironmentName, Alias: e.Alias}
	}
	return outcome{
		action:  keyChange,
		message: fmt.Sprintf("Key (name: %s) is %s.", k.Name, done),
		report:  s.deploy(p, p.environments, ro),
		item:    dto,
	}
}

// userOf names the first credential, in name order, that uses a key or
// certificate name of p, or "". Credentials of other projects use the admin
// project's item when their own project has none of that name (has). The
// caller holds s.mu.
func (s *Server) userOf(p *project, name string, uses func(*CredentialState) bool, has func(*project) bool) string {
	for _, projectName := range slices.Sorted(maps.Keys(s.projects)) {
		q := s.projects[projectName]
		if q != p && (p != s.projects[adminProject] || has(q)) {
			continue
		}
		for _, username := range slices.Sorted(maps.Keys(q.credentials)) {
			if uses(q.credentials[username]) {
				return username
			}
		}
	}
	return ""
}

// keyEnvironments validates a cryptoKeyInfoEnvironmentList against the
// project; the contents are checked against the key's type by keyTypeOf. The
// caller holds s.mu.
func (p *project) keyEnvironments(in []keyEnvironmentInput) ([]KeyEnvironment, *apiError) {
	if len(in) == 0 {
		return nil, badRequest("cryptoKeyInfoEnvironmentList must not be empty")
	}
	out := make([]KeyEnvironment, 0, len(in))
	for i, e := range in {
		env := e.EnvironmentName
		switch {
		case env == "":
			return nil, badRequest("cryptoKeyInfoEnvironmentList[%d].environmentName is required", i)
		case !slices.Contains(p.environments, env):
			return nil, badRequest("Environment (name: %s) was not found!", env)
		case slices.ContainsFunc(out, func(k KeyEnvironment) bool { return k.EnvironmentName == env }):
			return nil, badRequest("Environment (name: %s) is listed more than once in cryptoKeyInfoEnvironmentList", env)
		case strings.TrimSpace(e.Content) == "":
			return nil, badRequest("content is required for environment %s", env)
		}
		out = append(out, KeyEnvironment{EnvironmentName: env, Content: e.Content, Alias: e.Alias})
	}
	return out, nil
}

// keyTypeOf checks the contents against the key type sent, or, when none is,
// infers it from them: they must then all be of one type.
func keyTypeOf(sent *string, envs []KeyEnvironment) (string, *apiError) {
	if sent != nil && !slices.Contains(keyTypes, *sent) {
		return "", badRequest("Invalid keyType: %q (expected one of %s)", *sent, strings.Join(keyTypes, ", "))
	}
	inferred := ""
	for _, e := range envs {
		got, refusal := contentKeyType(e.Content)
		switch {
		case sent != nil && *sent == "SECRET_KEY":
			continue // a secret key's content is any text
		case refusal != "":
			return "", badRequest("Invalid key content for environment %s: %s", e.EnvironmentName, refusal)
		case sent != nil && got != *sent:
			return "", badRequest("Invalid key content for environment %s: a %s, not a %s", e.EnvironmentName, got, *sent)
		case sent == nil && inferred != "" && got != inferred:
			return "", badRequest("Invalid key content for environment %s: a %s, where the others are a %s; send keyType", e.EnvironmentName, got, inferred)
		}
		inferred = got
	}
	if sent != nil {
		return *sent, nil
	}
	return inferred, nil
}

// contentKeyType is the key type a content stands for, by its PEM block's
// type, or why it is refused: a PEM block that does not parse as what its
// type says, or of a type that is no key. Content that is not PEM is a
// secret key.
func contentKeyType(content string) (keyType, refusal string) {
	block, _ := pem.Decode([]byte(content))
	if block == nil {
		return "SECRET_KEY", ""
	}
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		keyType = "PRIVATE_KEY"
		_, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		keyType = "PRIVATE_KEY"
		_, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		keyType = "PRIVATE_KEY"
		_, err = x509.ParseECPrivateKey(block.Bytes)
	case "PUBLIC KEY":
		keyType = "PUBLIC_KEY"
		_, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		keyType = "CERTIFICATE"
		_, err = x509.ParseCertificate(block.Bytes)
	default:
		return "", fmt.Sprintf("a PEM %s block is neither a key nor a certificate", block.Type)
	}
	if err != nil {
		return "", fmt.Sprintf("the PEM %s block does not parse", block.Type)
	}
	return keyType, ""
}
