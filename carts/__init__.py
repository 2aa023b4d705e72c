"""What people touch: demo catalog, storefront, API, admin, commands."""
