"""The host's catalog: books and vouchers, and a basket page built on cartsvc.shop."""
