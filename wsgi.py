from portal.app import create_app, prepare_process

app = create_app()
prepare_process(app)
