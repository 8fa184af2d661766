"""Behaviour: orders and events tables, customer features, CLV, tiers, benefits sought."""
