package ordersv1

// Hand-written (not generated): request validation. fxgrpc's validation
// interceptor calls Validate on every request, unary and streamed, and
// answers INVALID_ARGUMENT with a google.rpc.BadRequest listing each
// FieldError; the REST gateway turns that into 400.

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits of the requests, also quoted in the proto comments.
const (
	MaxIDLen          = 64
	MaxItems          = 50
	MaxQuantity       = 1000
	MaxUnitPriceCents = 10_000_000
	MaxPageSize       = 100
	MaxReasonLen      = 200
)

// FieldError is one invalid field of a request.
type FieldError struct {
	field, reason string
}

// Field is the field's path, e.g. "items[0].quantity".
func (e FieldError) Field() string { return e.field }

// Reason says what is wrong and what is allowed.
func (e FieldError) Reason() string { return e.reason }

// Error formats "field: reason".
func (e FieldError) Error() string { return e.field + ": " + e.reason }

func fieldErr(field, format string, args ...any) error {
	return FieldError{field: field, reason: fmt.Sprintf(format, args...)}
}

func checkID(field, v string, required bool) error {
	switch n := utf8.RuneCountInString(v); {
	case n == 0 && required:
		return fieldErr(field, "is required")
	case n > MaxIDLen:
		return fieldErr(field, "must be at most %d characters, got %d", MaxIDLen, n)
	}
	return nil
}

// Validate checks a CreateOrderRequest: a customer id and 1 to 50 valid items.
func (r *CreateOrderRequest) Validate() error {
	errs := []error{checkID("customer_id", r.GetCustomerId(), true)}
	switch n := len(r.GetItems()); {
	case n == 0:
		errs = append(errs, fieldErr("items", "at least one item is required"))
	case n > MaxItems:
		errs = append(errs, fieldErr("items", "at most %d items, got %d", MaxItems, n))
	}
	for i, it := range r.GetItems() {
		p := fmt.Sprintf("items[%d].", i)
		errs = append(errs, checkID(p+"sku", it.GetSku(), true))
		if q := it.GetQuantity(); q < 1 || q > MaxQuantity {
			errs = append(errs, fieldErr(p+"quantity", "must be between 1 and %d, got %d", MaxQuantity, q))
		}
		if c := it.GetUnitPriceCents(); c < 0 || c > MaxUnitPriceCents {
			errs = append(errs, fieldErr(p+"unit_price_cents", "must be between 0 and %d, got %d", MaxUnitPriceCents, c))
		}
	}
	return errors.Join(errs...)
}

// Validate checks a GetOrderRequest: an id.
func (r *GetOrderRequest) Validate() error { return checkID("id", r.GetId(), true) }

// Validate checks a WatchOrderRequest: an id.
func (r *WatchOrderRequest) Validate() error { return checkID("id", r.GetId(), true) }

// Validate checks a CancelOrderRequest: an id and a reason of at most 200
// characters.
func (r *CancelOrderRequest) Validate() error {
	errs := []error{checkID("id", r.GetId(), true)}
	if n := utf8.RuneCountInString(r.GetReason()); n > MaxReasonLen {
		errs = append(errs, fieldErr("reason", "must be at most %d characters, got %d", MaxReasonLen, n))
	}
	return errors.Join(errs...)
}

// Validate checks a ListOrdersRequest: page size 0 to 100, a known status.
func (r *ListOrdersRequest) Validate() error {
	errs := []error{checkID("customer_id", r.GetCustomerId(), false)}
	if s := r.GetPageSize(); s < 0 || s > MaxPageSize {
		errs = append(errs, fieldErr("page_size", "must be between 0 and %d, got %d", MaxPageSize, s))
	}
	if _, ok := OrderStatus_name[int32(r.GetStatus())]; !ok {
		errs = append(errs, fieldErr("status", "unknown status %d", r.GetStatus()))
	}
	return errors.Join(errs...)
}
