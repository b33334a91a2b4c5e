package fxcore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
)

type retryLater struct{ error }

func (retryLater) ErrorClass() ErrorClass    { return ClassUnavailable }
func (retryLater) PublicMessage() string     { return "payments are down" }
func (retryLater) RetryAfter() time.Duration { return 7 * time.Second }

func TestClassify(t *testing.T) {
	t.Parallel()
	eofIsUnavailable := Classifier(func(err error) (ErrorClass, string, bool) {
		if errors.Is(err, io.EOF) {
			return ClassUnavailable, "", true
		}
		return 0, "", false
	})
	secret := errors.New("dial tcp 10.0.0.7:5432: user=app database=orders: refused")
	cases := []struct {
		name  string
		err   error
		want  ErrorClass
		msg   string
		retry time.Duration
	}{
		{"nil", nil, ClassUnknown, "", 0},
		{"unclassified", secret, ClassUnknown, "internal error", 0},
		{"explicit", NewError(ClassNotFound, "order 42 not found", secret), ClassNotFound, "order 42 not found", 0},
		{"wrapped explicit", fmt.Errorf("orders: get: %w", NewError(ClassInvalid, "", secret)), ClassInvalid, "invalid request", 0},
		{"outermost class wins", NewError(ClassFailedPrecondition, "order is cancelled", NewError(ClassNotFound, "x", nil)), ClassFailedPrecondition, "order is cancelled", 0},
		{"explicit internal", NewError(ClassInternal, "do not show this", secret), ClassInternal, "internal error", 0},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), ClassCanceled, ClassCanceled.Message(), 0},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), ClassDeadlineExceeded, ClassDeadlineExceeded.Message(), 0},
		{"classifier", fmt.Errorf("read: %w", io.EOF), ClassUnavailable, ClassUnavailable.Message(), DefaultRetryAfter},
		{"own retry after", retryLater{secret}, ClassUnavailable, "payments are down", 7 * time.Second},
	}
	for _, c := range cases {
		got := Classify(c.err, nil, eofIsUnavailable)
		require.Equal(t, c.want, got.Class, c.name)
		require.Equal(t, c.msg, got.Message, c.name)
		require.Equal(t, c.retry, got.RetryAfter, c.name)
		require.NotContains(t, got.Message, "10.0.0.7", c.name)
	}
	require.Equal(t, ClassUnknown, Classify(io.EOF).Class, "no classifier, no class")
}

func TestErrorClassNamesAndError(t *testing.T) {
	t.Parallel()
	for c := ClassUnknown; c <= ClassInternal; c++ {
		require.NotContains(t, c.String(), "ErrorClass(", "class %d has a name", c)
		require.NotEmpty(t, c.Message())
	}
	require.Equal(t, "ErrorClass(200)", ErrorClass(200).String())
	require.True(t, ErrorClass(200).Internal())
	require.True(t, ClassUnavailable.Retryable())
	require.True(t, ClassAborted.Retryable())
	require.False(t, ClassInvalid.Retryable())

	cause := errors.New("boom")
	e := NewError(ClassAborted, "", cause)
	require.Equal(t, ClassAborted.Message()+": boom", e.Error())
	require.ErrorIs(t, e, cause)
	require.Equal(t, "gone", NewError(ClassNotFound, "gone", nil).Error())
}

func TestAsClassifier(t *testing.T) {
	t.Parallel()
	var got []Classifier
	app := fx.New(fx.NopLogger,
		AsClassifier(func(error) (ErrorClass, string, bool) { return ClassInvalid, "", true }),
		AsClassifier(func() Classifier { return func(error) (ErrorClass, string, bool) { return 0, "", false } }),
		fx.Invoke(fx.Annotate(func(cs []Classifier) { got = cs }, fx.ParamTags(`group:"`+ClassifierGroup+`"`))),
	)
	require.NoError(t, app.Err())
	require.Len(t, got, 2)

	bad := fx.New(fx.NopLogger, AsClassifier(func() int { return 1 }),
		fx.Invoke(fx.Annotate(func([]Classifier) {}, fx.ParamTags(`group:"`+ClassifierGroup+`"`))))
	require.ErrorContains(t, bad.Err(), "fxcore.AsClassifier")
}
