package messages_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/apiops-worker/apiops-worker/messages"
)

func TestSecretNeverPrints(t *testing.T) {
	const password, file = "hunter2-pw-secret", "S0VZU1RPUkUtQllURVM="
	env := messages.KeyStoreEnvironment{EnvironmentName: "production", File: messages.NewSecret(file), Password: messages.NewSecret(password), KeyStoreType: "JKS"}
	params := &messages.KeystoreCreate{Name: "k", KeyStoreEnvironmentList: []messages.KeyStoreEnvironment{env}}
	cmd := &messages.Command{ID: "c1", Type: "keystore.create", Project: "P", Params: params}

	var printed []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		for _, v := range []any{env.Password, env, &env, params, cmd, *cmd} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
	}
	for _, v := range []any{env, params, cmd} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		printed = append(printed, string(b))
		text, _ := env.Password.MarshalText()
		printed = append(printed, string(text))
	}

	var logs bytes.Buffer
	for _, enc := range []zapcore.Encoder{
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
	} {
		log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&logs), zapcore.DebugLevel))
		log.Debug("command", zap.Any("cmd", cmd), zap.Any("params", params), zap.Reflect("env", env),
			zap.Stringer("password", env.Password), zap.Any("file", env.File), zap.Stringers("list", []fmt.Stringer{env.File}))
		log.Sugar().Debugw("sugared", "cmd", cmd, "env", env)
		log.Sugar().Debugf("formatted %v %+v", cmd, env)
	}
	printed = append(printed, logs.String())

	for _, s := range printed {
		if strings.Contains(s, password) || strings.Contains(s, file) {
			t.Fatalf("a secret was printed: %s", s)
		}
	}
	if !strings.Contains(logs.String(), messages.Redacted) {
		t.Errorf("logs do not show %s:\n%s", messages.Redacted, logs.String())
	}
}

func TestDecodeErrorsNeverQuoteSecrets(t *testing.T) {
	const secret = "not-base64-but-secret!"
	bodies := []string{
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"` + secret + `","password":"p","keyStoreType":"JKS"}]}}`,
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"` + secret + `","keyStoreType":"jks"}]}}`,
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"` + secret + `"}]}}`,
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"` + secret + `","keyStoreType":"JKS","x":1}]}}`,
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"` + secret + `","keyStoreType":"JKS"}]}`,
		`{"id":"a","params":{"name":"k","keyStoreEnvironmentList":[{"environmentName":"e","file":"AA==","password":"` + secret + `","keyStoreType":"JKS"}]}} trailing`,
	}
	for _, body := range bodies {
		_, err := messages.Decode("P", "keystore.create", []byte(body))
		if err == nil {
			t.Fatalf("no error for %s", body)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "not-base64") {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
}
