"""The environment the core's tests run in: a `dev` stage whose AWS is moto."""

TEST_ENV = {
    "APP_STAGE": "dev",
    "FIREBASE_PROJECT_ID": "test-project",
    "WEBSOCKET_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/api",
    "CONNECTIONS_TABLE": "test-connections",
    "MAX_CONNECTIONS_PER_USER": "10",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
