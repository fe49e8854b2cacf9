package simulator

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"slices"
	"strings"
	"time"
)

// certificate is a certificate of a project.
type certificate struct {
	CertificateState
	// seeded names the seed's certificate whose generated content this one is
	// still to get (see project.certificateContent); "" once it has it.
	seeded string
}

// CertificateState is a certificate as the simulator holds it: what was
// uploaded, or for one from the seed a generated self-signed certificate.
type CertificateState struct {
	Name         string
	Description  string
	Environments []CertificateEnvironment
}

// CertificateEnvironment is a certificate's content for one environment: the
// PEM file as uploaded, a certificate or a chain whose first certificate is
// the one described.
type CertificateEnvironment struct {
	EnvironmentName string
	Content         string
	Alias           string
}

// Certificate reports a certificate as created or last updated.
func (s *Server) Certificate(projectName, name string) (CertificateState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[projectName]
	if !ok {
		return CertificateState{}, false
	}
	c, ok := p.certificates[name]
	if !ok {
		return CertificateState{}, false
	}
	p.certificateContent(c)
	out := c.CertificateState
	out.Environments = slices.Clone(c.Environments)
	return out, true
}

// certificateForm is a certificate create or update form; a nil field was not
// sent.
type certificateForm struct {
	name, description *string
	environments      []string
	pem               []byte
}

// parseCertificateForm reads a multipart/form-data body: the fields name,
// description and environmentList, one per environment or one
// comma-separated list (both are accepted, as clients send either), and the
// file pemEncodedFile.
func parseCertificateForm(r request) (certificateForm, *apiError) {
	var f certificateForm
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return f, badRequest("Content-Type must be multipart/form-data with a boundary")
	}
	form, err := multipart.NewReader(bytes.NewReader(r.body), params["boundary"]).ReadForm(maxBodyBytes)
	if err != nil {
		return f, badRequest("Invalid multipart/form-data body: %v", err)
	}
	defer func() { _ = form.RemoveAll() }()
	value := func(key string) *string {
		if v, ok := form.Value[key]; ok && len(v) > 0 {
			return &v[0]
		}
		return nil
	}
	f.name, f.description = value("name"), value("description")
	if values, ok := form.Value["environmentList"]; ok {
		f.environments = []string{}
		for _, v := range values {
			for env := range strings.SplitSeq(v, ",") {
				if env = strings.TrimSpace(env); env != "" {
					f.environments = append(f.environments, env)
				}
			}
		}
	}
	if files := form.File["pemEncodedFile"]; len(files) > 0 {
		file, err := files[0].Open()
		if err != nil {
			return f, badRequest("Invalid pemEncodedFile: %v", err)
		}
		defer file.Close()
		if f.pem, err = io.ReadAll(file); err != nil {
			return f, badRequest("Invalid pemEncodedFile: %v", err)
		}
	} else if v := value("pemEncodedFile"); v != nil {
		f.pem = []byte(*v) // sent as a plain field
	}
	return f, nil
}

func (s *Server) createCertificate(r request) (outcome, *apiError) {
	f, formErr := parseCertificateForm(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return outcome{}, err
	}
	if formErr != nil {
		return outcome{}, formErr
	}
	if f.name == nil || *f.name == "" {
		return outcome{}, badRequest("name is required")
	}
	if f.pem == nil {
		return outcome{}, badRequest("pemEncodedFile is required")
	}
	if _, refusal := parseChain(f.pem); refusal != "" {
		return outcome{}, badRequest("Invalid pemEncodedFile: %s", refusal)
	}
	if err := p.checkEnvironmentList(f.environments); err != nil {
		return outcome{}, err
	}
	if hasCertificate(p, *f.name) {
		return outcome{}, certificateExists(*f.name)
	}
	c := &certificate{CertificateState: CertificateState{Name: *f.name}}
	if f.description != nil {
		c.Description = *f.description
	}
	c.Environments = certificateEnvironments(f.environments, string(f.pem), c.Name)
	p.certificates[c.Name] = c
	return s.certificateChanged(p, c, "created", deployment), nil
}

// updateCertificate changes what the form sends: a new file replaces the
// content of every environment, an environmentList the environments (with
// the new file, or else the current content).
func (s *Server) updateCertificate(r request) (outcome, *apiError) {
	f, formErr := parseCertificateForm(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, c, err := s.certificate(r)
	if err != nil {
		return outcome{}, err
	}
	if formErr != nil {
		return outcome{}, formErr
	}
	p.certificateContent(c)
	next := *c
	if f.name != nil {
		if *f.name == "" {
			return outcome{}, badRequest("name must not be empty")
		}
		next.Name = *f.name
	}
	if f.description != nil {
		next.Description = *f.description
	}
	content := ""
	if len(c.Environments) > 0 {
		content = c.Environments[0].Content
	}
	if f.pem != nil {
		if _, refusal := parseChain(f.pem); refusal != "" {
			return outcome{}, badRequest("Invalid pemEncodedFile: %s", refusal)
		}
		content = string(f.pem)
	}
	envs := make([]string, len(c.Environments))
	for i, e := range c.Environments {
		envs[i] = e.EnvironmentName
	}
	if f.environments != nil {
		if err := p.checkEnvironmentList(f.environments); err != nil {
			return outcome{}, err
		}
		envs = f.environments
	}
	if f.pem != nil || f.environments != nil {
		next.Environments = certificateEnvironments(envs, content, next.Name)
	}
	if next.Name != c.Name {
		if hasCertificate(p, next.Name) {
			return outcome{}, certificateExists(next.Name)
		}
		delete(p.certificates, c.Name)
	}
	p.certificates[next.Name] = &next
	return s.certificateChanged(p, &next, "updated", deployment), nil
}

func (s *Server) deleteCertificate(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, c, err := s.certificate(r)
	if err != nil {
		return outcome{}, err
	}
	uses := func(cred *CredentialState) bool { return cred.Certificate == c.Name }
	if user := s.userOf(p, c.Name, uses, func(q *project) bool { return hasCertificate(q, c.Name) }); user != "" {
		return outcome{}, badRequest("Certificate (name: %s) is used by Credential (username: %s)! Remove it from the credential first.", c.Name, user)
	}
	delete(p.certificates, c.Name)
	return s.certificateChanged(p, c, "deleted", undeployment), nil
}

// listCertificates is list-certificates.mdx's GET, in name order.
func (s *Server) listCertificates(r request) (outcome, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.project(r)
	if err != nil {
		return outcome{}, err
	}
	list := make([]certificateDTO, 0, len(p.certificates))
	for _, name := range slices.Sorted(maps.Keys(p.certificates)) {
		list = append(list, p.certificateDTO(p.certificates[name]))
	}
	return outcome{action: certificateList, item: list}, nil
}

// certificate finds the request's project and certificate. The caller holds s.mu.
func (s *Server) certificate(r request) (*project, *certificate, *apiError) {
	p, err := s.project(r)
	if err != nil {
		return nil, nil, err
	}
	name := r.PathValue("certificateName")
	c, ok := p.certificates[name]
	if !ok {
		return nil, nil, badRequest("Certificate (name: %s) is not found!", name)
	}
	return p, c, nil
}

func certificateExists(name string) *apiError {
	return badRequest("Certificate (name: %s) is already exist! Try update operation if want to change its value.", name)
}

// checkEnvironmentList checks a form's environmentList: given, known, each once.
func (p *project) checkEnvironmentList(envs []string) *apiError {
	if len(envs) == 0 {
		return badRequest("environmentList is required")
	}
	for i, env := range envs {
		switch {
		case !slices.Contains(p.environments, env):
			return badRequest("Environment (name: %s) was not found!", env)
		case slices.Contains(envs[:i], env):
			return badRequest("Environment (name: %s) is listed more than once in environmentList", env)
		}
	}
	return nil
}

func certificateEnvironments(envs []string, content, alias string) []CertificateEnvironment {
	out := make([]CertificateEnvironment, len(envs))
	for i, env := range envs {
		out[i] = CertificateEnvironment{EnvironmentName: env, Content: content, Alias: alias}
	}
	return out
}

// certificateChanged is the outcome of a certificate write, answered like a
// keystore's. The caller holds s.mu.
func (s *Server) certificateChanged(p *project, c *certificate, done string, ro rollout) outcome {
	return outcome{
		action:  certificateChange,
		message: fmt.Sprintf("Certificate (name: %s) is %s.", c.Name, done),
		report:  s.deploy(p, p.environments, ro),
		item:    p.certificateDTO(c),
	}
}

// parseChain parses the PEM certificates of a file, or says why it is refused.
func parseChain(data []byte) ([]*x509.Certificate, string) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Sprintf("a PEM %s block where a CERTIFICATE is expected", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse", len(chain)+1)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, "no PEM CERTIFICATE block"
	}
	return chain, ""
}

// certificateDTO is a certificate as list-certificates.mdx shows it, giving
// one from the seed its content first. The caller holds s.mu.
func (p *project) certificateDTO(c *certificate) certificateDTO {
	p.certificateContent(c)
	out := certificateDTO{Name: c.Name, Description: c.Description, Environments: make([]certificateEnvironmentDTO, len(c.Environments))}
	for i, e := range c.Environments {
		out.Environments[i] = certificateEnvironmentDTO{EnvironmentName: e.EnvironmentName, Alias: e.Alias}
		chain, _ := parseChain([]byte(e.Content)) // checked when stored
		if len(chain) == 0 {
			continue
		}
		cert := chain[0]
		sum := sha1.Sum(cert.Raw)
		out.Environments[i].StartDate = cert.NotBefore.UTC().Format(time.RFC3339)
		out.Environments[i].EndDate = cert.NotAfter.UTC().Format(time.RFC3339)
		out.Environments[i].Base64EncodedContent = base64.StdEncoding.EncodeToString(cert.Raw)
		out.Environments[i].SHA1Thumbprint = strings.ToUpper(hex.EncodeToString(sum[:]))
		out.Environments[i].SubjectDN = cert.Subject.String()
	}
	return out
}

type (
	// certificateDTO is list-certificates.mdx's item.
	certificateDTO struct {
		Name         string                      `json:"name"`
		Description  string                      `json:"description"`
		Environments []certificateEnvironmentDTO `json:"certificateEnvironmentList"`
	}
	// certificateEnvironmentDTO has RFC 3339 UTC dates, the base64 DER of the
	// certificate and its SHA-1 thumbprint in upper-case hex.
	certificateEnvironmentDTO struct {
		EnvironmentName      string `json:"environmentName"`
		StartDate            string `json:"startDate"`
		EndDate              string `json:"endDate"`
		Base64EncodedContent string `json:"base64EncodedContent"`
		SHA1Thumbprint       string `json:"sha1Thumbprint"`
		SubjectDN            string `json:"subjectDn"`
		Alias                string `json:"alias"`
	}
)
