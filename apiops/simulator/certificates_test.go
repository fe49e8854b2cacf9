package simulator_test

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const certificates = myProject + "certificates/"

// form is a multipart form: fields in order, and a pemEncodedFile unless nil.
type form struct {
	fields [][2]string
	file   []byte
}

// sendForm makes an authorised multipart/form-data request.
func sendForm(t *testing.T, ts *httptest.Server, method, path string, f form) response {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, kv := range f.fields {
		if err := w.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if f.file != nil {
		part, err := w.CreateFormFile("pemEncodedFile", "certificate.pem")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = part.Write(f.file)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", w.FormDataContentType())
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b.String()}
}

// certificateEntry is a certificateEnvironmentList entry for cert.
func certificateEntry(env, alias string, startDate, endDate time.Time, der []byte, subject string) string {
	sum := sha1.Sum(der)
	entry, _ := json.Marshal(map[string]string{
		"environmentName": env, "alias": alias,
		"startDate": startDate.UTC().Format(time.RFC3339), "endDate": endDate.UTC().Format(time.RFC3339),
		"base64EncodedContent": base64.StdEncoding.EncodeToString(der),
		"sha1Thumbprint":       strings.ToUpper(hex.EncodeToString(sum[:])), "subjectDn": subject,
	})
	return string(entry)
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	chain := append([]byte(certificatePEM), pemOf("CERTIFICATE", selfSigned("issuer", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)).Raw)...)
	entry := func(env string) string {
		return certificateEntry(env, "partner-cert-2027", testCert.NotBefore, testCert.NotAfter, testCert.Raw, "CN=partner-2027")
	}
	created := `{"name":"partner-cert-2027","description":"partner","certificateEnvironmentList":[` + entry("production") + `,` + entry("staging") + `]}`
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			// One field per environment; the chain's first certificate is described.
			res := sendForm(t, ts, "POST", certificates, form{fields: [][2]string{
				{"name", "partner-cert-2027"}, {"description", "partner"}, {"environmentList", "production"}, {"environmentList", "staging"},
			}, file: chain})
			wantJSON(t, res, 200, keystoreLike(d, "Certificate (name: partner-cert-2027) is created.", created, false))
			c, ok := sim.Certificate("MyProject", "partner-cert-2027")
			if !ok || c.Description != "partner" || len(c.Environments) != 2 || c.Environments[1].Content != string(chain) {
				t.Errorf("Certificate = %+v, %v", c, ok)
			}
			if res := call(t, ts, "PUT", creds+"api-user/certificate/partner-cert-2027/", ""); res.status != 200 {
				t.Errorf("assign the created certificate: %d %s", res.status, res.body)
			}

			// One comma-separated value; every part optional on update.
			res = sendForm(t, ts, "PUT", certificates+"partner-cert-2027/", form{fields: [][2]string{{"environmentList", "staging"}}})
			if res.status != 200 {
				t.Fatalf("update environments: %d %s", res.status, res.body)
			}
			if c, _ := sim.Certificate("MyProject", "partner-cert-2027"); len(c.Environments) != 1 || c.Environments[0].Content != string(chain) || c.Description != "partner" {
				t.Errorf("after the update: %+v", c)
			}
			res = sendForm(t, ts, "POST", certificates, form{fields: [][2]string{{"name", "both"}, {"environmentList", "production, staging"}}, file: []byte(certificatePEM)})
			if c, _ := sim.Certificate("MyProject", "both"); res.status != 200 || len(c.Environments) != 2 {
				t.Errorf("comma-separated environmentList: %d %s, %+v", res.status, res.body, c)
			}

			for _, tc := range []struct {
				name string
				f    form
				text string
			}{
				{"name missing", form{fields: [][2]string{{"environmentList", "staging"}}, file: []byte(certificatePEM)}, "name is required"},
				{"name taken", form{fields: [][2]string{{"name", "partner-cert-2025"}, {"environmentList", "staging"}}, file: []byte(certificatePEM)},
					"Certificate (name: partner-cert-2025) is already exist! Try update operation if want to change its value."},
				{"no file", form{fields: [][2]string{{"name", "c"}, {"environmentList", "staging"}}}, "pemEncodedFile is required"},
				{"not PEM", form{fields: [][2]string{{"name", "c"}, {"environmentList", "staging"}}, file: []byte("hello")},
					"Invalid pemEncodedFile: no PEM CERTIFICATE block"},
				{"a key", form{fields: [][2]string{{"name", "c"}, {"environmentList", "staging"}}, file: []byte(pkcs8PEM)},
					"Invalid pemEncodedFile: a PEM PRIVATE KEY block where a CERTIFICATE is expected"},
				{"broken certificate", form{fields: [][2]string{{"name", "c"}, {"environmentList", "staging"}}, file: []byte(pemOf("CERTIFICATE", []byte("x")))},
					"Invalid pemEncodedFile: certificate 1 does not parse"},
				{"no environment", form{fields: [][2]string{{"name", "c"}}, file: []byte(certificatePEM)}, "environmentList is required"},
				{"unknown environment", form{fields: [][2]string{{"name", "c"}, {"environmentList", "staging,qa"}}, file: []byte(certificatePEM)},
					"Environment (name: qa) was not found!"},
			} {
				wantRefusal(t, d, sendForm(t, ts, "POST", certificates, tc.f), 400, tc.text)
				if _, ok := sim.Certificate("MyProject", "c"); ok {
					t.Fatalf("%s: the certificate was created", tc.name)
				}
			}
			wantRefusal(t, d, call(t, ts, "POST", certificates, `{"name":"c"}`), 400, "Content-Type must be multipart/form-data with a boundary")
			wantRefusal(t, d, sendForm(t, ts, "PUT", certificates+"nope/", form{}), 400, "Certificate (name: nope) is not found!")

			wantRefusal(t, d, call(t, ts, "DELETE", certificates+"partner-cert-2027/", ""), 400,
				"Certificate (name: partner-cert-2027) is used by Credential (username: api-user)! Remove it from the credential first.")
			if res := call(t, ts, "DELETE", certificates+"both/", ""); res.status != 200 {
				t.Errorf("delete: %d %s", res.status, res.body)
			}
			if _, ok := sim.Certificate("MyProject", "both"); ok {
				t.Error("the deleted certificate is still there")
			}
		})
	}
}

// TestListCertificates: GET certificates/ lists each certificate's
// environments with RFC 3339 UTC dates; seeded ones are valid from 30 days
// before the simulator was created until expiresInDays after it.
func TestListCertificates(t *testing.T) {
	t.Parallel()
	before := time.Now().Truncate(time.Second)
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			after := time.Now()
			res := call(t, ts, "GET", certificates, "")
			var body struct {
				Success    *bool   `json:"success"`
				Status     *string `json:"status"`
				ResultList []struct {
					Name         string
					Environments []map[string]string `json:"certificateEnvironmentList"`
				}
			}
			if err := json.Unmarshal([]byte(res.body), &body); err != nil || res.status != 200 {
				t.Fatalf("%d %s", res.status, res.body)
			}
			if d == seedD && (body.Success == nil || !*body.Success || body.Status != nil) || d != seedD && (body.Status == nil || *body.Status != "SUCCESS" || body.Success != nil) {
				t.Errorf("envelope of %s", res.body)
			}
			if len(body.ResultList) != 3 || body.ResultList[0].Name != "partner-cert-2025" || body.ResultList[1].Name != "partner-cert-2026" ||
				body.ResultList[2].Name != "retired-cert-2024" {
				t.Fatalf("resultList %s", res.body)
			}
			for i, days := range []int{9, 365} { // retired-cert-2024 expired before the usual start: its own start (content.go)
				envs := body.ResultList[i].Environments
				if len(envs) != 2 || envs[0]["environmentName"] != "production" || envs[1]["environmentName"] != "staging" {
					t.Fatalf("environments %v", envs)
				}
				e := envs[0]
				start, err1 := time.Parse(time.RFC3339, e["startDate"])
				end, err2 := time.Parse(time.RFC3339, e["endDate"])
				if err1 != nil || err2 != nil || !strings.HasSuffix(e["endDate"], "Z") {
					t.Fatalf("dates %q %q", e["startDate"], e["endDate"])
				}
				within := func(got, from, to time.Time) bool { return !got.Before(from.Add(-time.Second)) && !got.After(to) }
				if !within(start, before.AddDate(0, 0, -30), after.AddDate(0, 0, -30)) || !within(end, before.AddDate(0, 0, days), after.AddDate(0, 0, days)) {
					t.Errorf("%s: %s to %s, want 30 days before now to %d days after", body.ResultList[i].Name, start, end, days)
				}
				if e["subjectDn"] != "CN="+body.ResultList[i].Name || e["alias"] != body.ResultList[i].Name || len(e["sha1Thumbprint"]) != 40 {
					t.Errorf("entry %v", e)
				}
				der, _ := base64.StdEncoding.DecodeString(e["base64EncodedContent"])
				c, _ := sim.Certificate("MyProject", body.ResultList[i].Name)
				if block, _ := pem.Decode([]byte(c.Environments[0].Content)); block == nil || !bytes.Equal(block.Bytes, der) {
					t.Errorf("base64EncodedContent is not the certificate of %s", c.Name)
				}
			}
		})
	}
}
