from nova import monkey_patch ; monkey_patch.patch()  # noqa
