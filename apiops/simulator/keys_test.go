package simulator_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/apiops/simulator"
)

const keys = myProject + "keys/"

// PEM texts for the key and certificate bodies.
var (
	testKey        = mustKey()
	pkcs8PEM       = pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(testKey)))
	ecPEM          = pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(testKey)))
	publicPEM      = pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&testKey.PublicKey)))
	testCert       = selfSigned("partner-2027", time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	certificatePEM = pemOf("CERTIFICATE", testCert.Raw)
	brokenPEM      = pemOf("PRIVATE KEY", []byte("not DER"))
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mustKey() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) }

func pemOf(blockType string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
}

func selfSigned(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	template := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter}
	return must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, template, template, &testKey.PublicKey, testKey))))
}

// keyBody is a key create body with the given type ("" for none) and
// environment contents.
func keyBody(name, keyType string, contents map[string]string) string {
	body := map[string]any{"name": name, "description": "for partner", "cryptoKeyInfoEnvironmentList": []map[string]any{}}
	if keyType != "" {
		body["keyType"] = keyType
	}
	for _, env := range []string{"production", "staging"} {
		if c, ok := contents[env]; ok {
			body["cryptoKeyInfoEnvironmentList"] = append(body["cryptoKeyInfoEnvironmentList"].([]map[string]any),
				map[string]any{"environmentName": env, "content": c, "alias": env + "-alias"})
		}
	}
	return string(must(json.Marshal(body)))
}

// keystoreLike is a keys-secrets change's answer in dialect d, as keystore
// creation answers it: deployed (or undeployed) to both of MyProject's
// environments, and in the openapi dialect the item written.
func keystoreLike(d simulator.Dialect, message, item string, undeploy bool) string {
	byEnv := deployedByEnvironment
	if undeploy {
		byEnv = undeployedByEnvironment
	}
	switch d {
	case docsD:
		return `{"status":"SUCCESS","deploymentResult":` + byEnv + `}`
	case openapiD:
		return `{"status":"SUCCESS","resultMessage":` + quote(message) + `,"resultList":[` + item + `],"resultCount":1}`
	default:
		return `{"success":true,"deploymentResult":` + byEnv + `}`
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	created := `{"name":"partner-key-2027","description":"for partner","keyType":"PRIVATE_KEY","projectId":"` + hex24 + `",` +
		`"cryptoKeyInfoEnvironmentList":[{"environmentName":"production","alias":"production-alias"},{"environmentName":"staging","alias":"staging-alias"}]}`
	for _, d := range simulator.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			sim, ts := startIn(t, d)
			res := call(t, ts, "POST", keys, keyBody("partner-key-2027", "", map[string]string{"production": pkcs8PEM, "staging": ecPEM}))
			wantJSON(t, res, 200, keystoreLike(d, "Key (name: partner-key-2027) is created.", created, false))
			k, ok := sim.Key("MyProject", "partner-key-2027")
			if !ok || k.KeyType != "PRIVATE_KEY" || k.Description != "for partner" || len(k.Environments) != 2 ||
				k.Environments[1] != (simulator.KeyEnvironment{EnvironmentName: "staging", Content: ecPEM, Alias: "staging-alias"}) {
				t.Errorf("Key = %+v, %v", k, ok)
			}
			// The new key can be assigned where a private key is needed.
			if res := call(t, ts, "PUT", creds+"api-user/privateKey/partner-key-2027/", ""); res.status != 200 {
				t.Errorf("assign the created key: %d %s", res.status, res.body)
			}

			for _, tc := range []struct{ name, body, text string }{
				{"name missing", keyBody("", "", map[string]string{"production": pkcs8PEM}), "name is required"},
				{"name taken", keyBody("partner-key-2025", "", map[string]string{"production": pkcs8PEM}),
					"Key (name: partner-key-2025) is already exist! Try update operation if want to change its value."},
				{"no list", `{"name":"k"}`, "cryptoKeyInfoEnvironmentList is required"},
				{"empty list", `{"name":"k","cryptoKeyInfoEnvironmentList":[]}`, "cryptoKeyInfoEnvironmentList must not be empty"},
				{"unknown environment", `{"name":"k","cryptoKeyInfoEnvironmentList":[{"environmentName":"qa","content":"x"}]}`,
					"Environment (name: qa) was not found!"},
				{"empty content", `{"name":"k","cryptoKeyInfoEnvironmentList":[{"environmentName":"staging","content":""}]}`,
					"content is required for environment staging"},
				{"broken PEM", keyBody("k", "", map[string]string{"staging": brokenPEM}),
					"Invalid key content for environment staging: the PEM PRIVATE KEY block does not parse"},
				{"PEM of the wrong type", keyBody("k", "PUBLIC_KEY", map[string]string{"staging": pkcs8PEM}),
					"Invalid key content for environment staging: a PRIVATE_KEY, not a PUBLIC_KEY"},
				{"mixed types", keyBody("k", "", map[string]string{"production": pkcs8PEM, "staging": publicPEM}),
					"Invalid key content for environment staging: a PUBLIC_KEY, where the others are a PRIVATE_KEY; send keyType"},
				{"unknown keyType", keyBody("k", "JWK", map[string]string{"staging": "x"}),
					`Invalid keyType: "JWK" (expected one of PRIVATE_KEY, PUBLIC_KEY, SECRET_KEY, CERTIFICATE)`},
			} {
				wantRefusal(t, d, call(t, ts, "POST", keys, tc.body), 400, tc.text)
				if _, ok := sim.Key("MyProject", "k"); ok {
					t.Fatalf("%s: the key was created", tc.name)
				}
			}

			// Update: a list replaces the stored one and its content decides the type.
			res = call(t, ts, "PUT", keys+"partner-key-2027/", `{"cryptoKeyInfoEnvironmentList":[{"environmentName":"production","content":`+quote(publicPEM)+`}]}`)
			updated := `{"name":"partner-key-2027","description":"for partner","keyType":"PUBLIC_KEY","projectId":"` + hex24 + `",` +
				`"cryptoKeyInfoEnvironmentList":[{"environmentName":"production","alias":""}]}`
			wantJSON(t, res, 200, keystoreLike(d, "Key (name: partner-key-2027) is updated.", updated, false))
			if k, _ := sim.Key("MyProject", "partner-key-2027"); k.KeyType != "PUBLIC_KEY" || len(k.Environments) != 1 || k.Description != "for partner" {
				t.Errorf("updated key = %+v", k)
			}
			wantRefusal(t, d, call(t, ts, "PUT", keys+"partner-key-2027/", `{"keyType":"CERTIFICATE"}`), 400,
				"Invalid key content for environment production: a PUBLIC_KEY, not a CERTIFICATE")
			wantRefusal(t, d, call(t, ts, "PUT", keys+"partner-key-2027/", `{"name":"partner-pub-2025"}`), 400,
				"Key (name: partner-pub-2025) is already exist! Try update operation if want to change its value.")
			wantRefusal(t, d, call(t, ts, "PUT", keys+"nope/", `{}`), 400, "Key (name: nope) is not found!")

			// Delete: refused while a credential uses the key.
			wantRefusal(t, d, call(t, ts, "DELETE", keys+"partner-key-2027/", ""), 400,
				"Key (name: partner-key-2027) is used by Credential (username: api-user)! Remove it from the credential first.")
			wantRefusal(t, d, call(t, ts, "DELETE", keys+"partner-hmac-2025/", ""), 400,
				"Key (name: partner-hmac-2025) is used by Credential (username: partner-a)! Remove it from the credential first.")
			deleted := `{"name":"partner-hmac-2026","description":"","keyType":"SECRET_KEY","projectId":"` + hex24 + `","cryptoKeyInfoEnvironmentList":[]}`
			wantJSON(t, call(t, ts, "DELETE", keys+"partner-hmac-2026/", ""), 200,
				keystoreLike(d, "Key (name: partner-hmac-2026) is deleted.", deleted, true))
			if _, ok := sim.Key("MyProject", "partner-hmac-2026"); ok {
				t.Error("the deleted key is still there")
			}
			wantRefusal(t, d, call(t, ts, "DELETE", keys+"partner-hmac-2026/", ""), 400, "Key (name: partner-hmac-2026) is not found!")
		})
	}
}

// TestKeyTypeInference: without keyType, the PEM block's type decides; text
// that is not PEM is a secret key; with SECRET_KEY, any text is taken.
func TestKeyTypeInference(t *testing.T) {
	t.Parallel()
	sim, ts := start(t)
	for _, tc := range []struct{ name, keyType, content, want string }{
		{"pkcs8", "", pkcs8PEM, "PRIVATE_KEY"},
		{"ec", "", ecPEM, "PRIVATE_KEY"},
		{"public", "", publicPEM, "PUBLIC_KEY"},
		{"certificate", "", certificatePEM, "CERTIFICATE"},
		{"secret", "", "c2VjcmV0LWhtYWMta2V5", "SECRET_KEY"},
		{"secret-pem", "SECRET_KEY", pkcs8PEM, "SECRET_KEY"},
		{"declared-certificate", "CERTIFICATE", certificatePEM, "CERTIFICATE"},
	} {
		res := call(t, ts, "POST", keys, keyBody(tc.name, tc.keyType, map[string]string{"production": tc.content}))
		if res.status != 200 {
			t.Errorf("%s: %d %s", tc.name, res.status, res.body)
		}
		if k, _ := sim.Key("MyProject", tc.name); k.KeyType != tc.want {
			t.Errorf("%s: keyType %q, want %q", tc.name, k.KeyType, tc.want)
		}
	}
	if k, ok := sim.Key("MyProject", "partner-key-2025"); !ok || k.KeyType != "PRIVATE_KEY" || k.Environments != nil {
		t.Errorf("seeded key = %+v, %v; want its type and no content", k, ok)
	}
}
