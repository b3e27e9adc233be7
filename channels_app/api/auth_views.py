"""Login endpoints: GET a nonce for an address, POST its signature for a bearer token; POST logout to
revoke the token."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.api.errors import ApiError
from channels_app.api.fields import AddressField, HexBytesField
from channels_app.api.schema import refusals
from channels_app.api.throttles import LoginThrottle
from channels_app.services import auth


class AuthNonceView(APIView):
    """A one-time login nonce for an address, and the exact text to sign (EIP-191 personal sign)."""

    throttle_classes = [LoginThrottle]

    class InputSerializer(serializers.Serializer):
        address = AddressField()

        class Meta:
            ref_name = "AuthNonceQuery"  # its name in the OpenAPI schema

    class OutputSerializer(serializers.Serializer):
        address = serializers.CharField()
        nonce = serializers.CharField()
        message = serializers.CharField()
        expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "AuthNonce"  # its name in the OpenAPI schema

    @extend_schema(parameters=[InputSerializer], responses={200: OutputSerializer, **refusals(400, 503)})
    def get(self, request: Request) -> Response:
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        challenge, message = auth.auth_challenge_create(address=query.validated_data["address"])
        return Response(
            self.OutputSerializer(
                {
                    "address": challenge.address,
                    "nonce": challenge.nonce,
                    "message": message,
                    "expires_at": challenge.expires_at,
                }
            ).data
        )


class AuthTokenView(APIView):
    """Exchange the signed nonce for a bearer token good for the REST API and the websocket."""

    throttle_classes = [LoginThrottle]

    class InputSerializer(serializers.Serializer):
        address = AddressField()
        nonce = serializers.CharField(max_length=64)
        signature = HexBytesField(length=65)

        class Meta:
            ref_name = "AuthTokenRequest"  # its name in the OpenAPI schema

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        address = serializers.CharField()
        expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "AuthToken"  # its name in the OpenAPI schema

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, **refusals(400, 401, 503)})
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            issued = auth.auth_token_issue(**body.validated_data)
        except auth.AuthError as exc:
            raise ApiError(exc.code, exc.message, http_status=status.HTTP_401_UNAUTHORIZED) from None
        return Response(self.OutputSerializer(issued).data, status=status.HTTP_201_CREATED)


class AuthMeView(APIView):
    """Who the token stands for (and a cheap way to check that it still works)."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        address = serializers.CharField()

        class Meta:
            ref_name = "AuthMe"  # its name in the OpenAPI schema

    @extend_schema(responses={200: OutputSerializer, **refusals(401)})
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer({"address": request.user.address}).data)


class AuthLogoutView(APIView):
    """Revoke the bearer token of this request: it stops working at once, and every websocket logged
    in with it closes (code 4401, after an error frame `logged_out`), on every node process."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, **refusals(401)})
    def post(self, request: Request) -> Response:
        auth.auth_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
