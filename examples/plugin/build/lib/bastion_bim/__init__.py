"""An example bastion plugin package."""
