package service

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
)

// Order statuses as stored in the orders table.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
)

// Order is a row of the orders table (created by the migrations in
// migrations/). Version turns on fxrepo's optimistic locking: two concurrent
// cancels of one order cannot both win.
type Order struct {
	ID           string    `gorm:"primaryKey;size:36"`
	CustomerID   string    `gorm:"size:64;not null"`
	Items        []Item    `gorm:"serializer:json;not null"`
	TotalCents   int64     `gorm:"not null"`
	Status       string    `gorm:"size:16;not null"`
	CancelReason string    `gorm:"size:200;not null;default:''"`
	Version      int64     `gorm:"not null"`
	CreatedAt    time.Time `gorm:"not null"`
	UpdatedAt    time.Time `gorm:"not null"`
}

// TableName is the table of Order.
func (Order) TableName() string { return "orders" }

// Item is one line of an order (stored as JSON in the order row).
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int32  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

func statusToProto(s string) ordersv1.OrderStatus {
	switch s {
	case StatusPending:
		return ordersv1.OrderStatus_ORDER_STATUS_PENDING
	case StatusConfirmed:
		return ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED
	case StatusCancelled:
		return ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
	}
	return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
}

func statusFromProto(s ordersv1.OrderStatus) string {
	switch s {
	case ordersv1.OrderStatus_ORDER_STATUS_PENDING:
		return StatusPending
	case ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED:
		return StatusConfirmed
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return StatusCancelled
	}
	return ""
}

// Proto converts the row to its API form.
func (o *Order) Proto() *ordersv1.Order {
	items := make([]*ordersv1.LineItem, len(o.Items))
	for i, it := range o.Items {
		items[i] = &ordersv1.LineItem{Sku: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
	}
	return &ordersv1.Order{
		Id:           o.ID,
		CustomerId:   o.CustomerID,
		Items:        items,
		TotalCents:   o.TotalCents,
		Status:       statusToProto(o.Status),
		CancelReason: o.CancelReason,
		CreateTime:   timestamppb.New(o.CreatedAt),
		UpdateTime:   timestamppb.New(o.UpdatedAt),
	}
}
