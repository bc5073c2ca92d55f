from commandcenter import create_app

app = create_app()
